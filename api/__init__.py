"""HTTP control plane: the operator API served inside the engine (FastAPI)."""
