"""Billing (SPEC §7): tariffs, rating of calls and rent, prepaid minute packages, discounts.

Imports point inward: ``billing`` uses ``config``, ``routing`` and ``store``; ``api`` and
``engine`` use ``billing``, never the other way round.  ``billing.tariffs`` and
``billing.rating`` are pure (no I/O, no clock); ``billing.ledger_run`` writes the ledger.

Money is :class:`decimal.Decimal` only.  An amount is always ``quantity × unit_price`` exactly
(no rounding: tariffs have at most 3 decimals and quantities are integers).

The ledger lines rating writes
------------------------------
Every line is a row of the immutable ``ledger`` table (migration 0001; ``store.ledger``) with the
existing columns and meanings — nothing was added:

``item``
    ``rent`` · ``call`` · ``call_package`` · ``recording`` · ``package`` · ``discount``
    · ``sms_intercept`` · ``sms_smart`` (plus ``topup`` from the inventory area).
``period``
    ``YYYYMM``, the local month (``[time] zone``) the line belongs to (see below).
``quantity`` / ``unit`` / ``unit_price`` / ``amount``
    integer count, its unit, the price of one unit and ``quantity × unit_price`` (Decimal TEXT).
``ref``
    what was rated; unique per ``item`` (``ledger_item_ref``), which makes rating idempotent.
``pool_key`` / ``number``
    the pool and the X number the line is about (NULL where none applies).

* ``rent`` (unit ``month``): one number's rent for one month.  The month a number was bought
  in is written by the purchase itself (``store.inventory.purchase``), ref
  ``rent:<number>:<YYYYMM>`` (``…:<tenancy id>`` when the number was bought again within that
  month); every later month by :func:`billing.ledger_run.bill_rent`, ref
  ``rent:<number>:<YYYYMM>:h<tenancy id>`` (the tenancy holding the number at the month's first
  instant).
* ``call`` (unit ``minute``), ref ``<call record id>``: one line per answered call of a tenant's
  pool; ``quantity`` = the pay-as-you-go minutes (0 when packages covered all of them).
* ``call_package`` (unit ``minute``), ref ``<call record id>:<package id>``: the minutes of that
  call drawn from one prepaid package; ``unit_price`` and ``amount`` are 0.
* ``recording`` (unit ``minute``), ref ``<call record id>``: started minutes of the recording.
* ``sms_smart`` / ``sms_intercept`` (unit ``segment``), ref ``<SMS message id>`` (also the id
  of the SMS's call record, call_type 2/3/5): one line per SMS of a tenant's pool in a final
  state, by :func:`billing.ledger_run.rate_sms_messages`; ``quantity`` = segments (70 code
  points each: the text as sent — signature and suffix included — for a delivered smart SMS,
  as received for one intercepted, failed or discarded, which are all billed as intercepts; an
  unsubscribe reply ``T`` is free). Period: the local month the SMS reached its final state.
* ``package`` (unit ``package``), ref ``package:<package id>``: the purchase of a minute package.
* ``discount`` (no unit), ref ``discount:<random id>``: a negative line, ``quantity`` 1,
  ``unit_price`` = ``amount`` < 0.

So for statistics: the number of ``call`` lines is the number of billed (answered) calls, the
billed minutes of a call are its ``call`` plus ``call_package`` quantities, and the fees are the
sum of ``amount``.  A discount carries the pool it was granted for, or NULL for the whole tenant.
Package records and remaining quota: ``store.billing.list_packages``.

Rules (decided here; tests in ``tests/billing``)
-------------------------------------------------
* **Which leg**: a masked call is two legs (caller → X, X → callee) but one conversation; as the
  reference service, maskline bills the call time once per call record: the answered time of
  the bridged call, from the callee's answer (``start_time``) to the release
  (``release_time``).  Unanswered and intercepted calls cost nothing.
* **Started minutes**: the answered seconds are counted as the end-of-call report shows them —
  whole seconds between the answer and the release, each truncated to the second — so a tenant
  can check every line against its reports: 59 s → 1 min, 60 s → 1, 61 s → 2, 0 s → 0.
* **Recording**: started minutes of the recording's length (``recording_events.duration_s``,
  rounded to the second), never more than the call's minutes; a call whose record names a WAV
  but has no recording event is billed its answered minutes.
* **Month of a call**: the local month of its **release** time — the month of the CDR file and
  of the end-of-call report.  A call across midnight at the end of a month is billed whole in
  the month it ended; so a month's call lines are complete once the month is over.  The same
  instant decides which packages may pay for the call.
* **Rent**: per natural month from the purchase month.  The purchase month is charged by the
  purchase (in its transaction, so a number bought on the 31st pays that month); each later
  month is charged to the pool holding the number at the first instant of the month: a number
  released mid-month pays that month and not the next, a number migrated mid-month pays this
  month in the old pool and the next in the new one.  Operator pools (no tenant) pay nothing;
  numbers put into a tenant's pool by the operator are free for that month, then pay rent.
* **Packages**: call minutes only (never rent, never recording); a call draws from the packages
  valid at its release time that have minutes left, the one expiring first first, and what they
  do not cover is pay-as-you-go (so a package can run out in the middle of a call).
* **Tariffs**: the tariff in force when a line is written; changing it never rewrites a line.
"""
