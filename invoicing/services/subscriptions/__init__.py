"""Subscriptions (issue 11): plans that bill themselves, ours rather than Stripe Billing's.

Our scheduler makes each period's invoice and autopay (services/billing/autopay.py) charges it through the money
door (services/payments.py), so one ledger holds everything, the sandbox gateway runs every flow, and the owner
pays no Stripe Billing fee. Stripe only moves the money (PaymentIntents, SetupIntents); our portal is the
customer portal.

Models (invoicing/models.py, migration 0013_subscriptions): Plan, PlanPrice (never edited once used: a new price
is a new row), Subscription, SubscriptionPeriod (UNIQUE(subscription, period start): one invoice per period),
SubscriptionChange (plan and seat changes with their proration), CreditEntry (a client's credit per currency).

Modules:
- `proration.py`: the pure proration rule (whole days of the organization's time zone, minor units).
- `lifecycle.py`: create a subscription (trial or first invoice), the renewal sweep (job `subscriptions`,
  exactly once per period), trial-ending emails, status moves (past_due on a failed charge or an unpaid due
  date, active again when paid, canceled or left unpaid when the autopay ladder ends), cancel (at period end,
  undo, now with an optional prorated refund), pause and resume.
- `changes.py`: preview and apply plan and seat changes (upgrade now with proration, downgrade at period end),
  credit kept and applied to the next invoice.
- `plans.py`: plan and price administration, archive, migrating subscribers to a new price.
- `queries.py` / `figures.py`: lists with filters, the client page panel, MRR, trials, past due, churn.
- `signup.py`: the public sign-up page's service (/subscribe/<slug>): client, portal contact, card, consent.

Every status move is an AuditEvent on the subscription (object_type "subscription").
"""
