"""Reporting: one service computes every figure (the reports page, the dashboard's cards, the invoice list a
card links to, statements, exports and the API's statistics all call it).

- period.py     the period a report covers, in the organization's time zone, and the report's filters
- cards.py      what each headline card counts, as SQL clauses shared by the figures and the invoice list
- figures.py    headline cards, monthly revenue, payment methods and channels, top clients, the dashboard
- aging.py      accounts receivable aging per client
- statements.py a client's statement: opening balance, every invoice, payment and refund, running balance
- exports.py    invoices, line items, payments, refunds and aging as CSV or .xlsx, streamed, audited
"""
