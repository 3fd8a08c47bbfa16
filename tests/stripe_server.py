"""Test-only Stripe-compatible server: localstripe plus what it lacks.

Run: python tests/stripe_server.py --port PORT (--port 0 picks a free port; stdout's first line is
"READY http://127.0.0.1:PORT"). localstripe is GPL-3.0: this is a test tool, the app never imports it.
Added: Checkout Sessions with a hosted pay page (/_config/checkout/{id}, cards in CARDS; an embedded_page
session gets a client_secret and no url, and the same page stands in for the form Stripe.js would mount, then
sends the customer to its return_url: localstripe's fake Stripe.js has no embedded checkout), Checkout in setup
mode with a hosted save-a-card page (/_config/setup/{id}, built on localstripe's SetupIntent), Idempotency-Key
replays, charge.refunded/refund.created events, refunds that fail later (POST /_config/refunds/{id}/fail, with
Stripe's refund.updated/charge.refund.updated/refund.failed events), off-session declines shaped like Stripe's
(402 card_error with decline_code, advice_code and the PaymentIntent; scripted per card with
/_config/payment_methods/{id}/outcomes), object counts (/_config/counts), fault injection (/_config/faults,
including delay_after: done, then answered late) and a webhook sender with pause/drop/duplicates/delay.
DELETE /_config/data resets everything but webhook registrations.
"""
import argparse
import asyncio
import hashlib
import hmac
import html
import json
import logging
import re
import socket
import time
from typing import Any

import aiohttp
from aiohttp import web
from localstripe import resources, server, webhooks
from localstripe.errors import UserError
from localstripe.resources import (
    Charge,
    Event,
    List,
    PaymentIntent,
    PaymentMethod,
    Refund,
    SetupIntent,
    StripeObject,
    random_id,
    store,
    try_convert_to_int,
)

resources.Store.dump_to_disk = lambda self: None  # never share /tmp/localstripe.pickle
store.clear()
log = logging.getLogger('stripe_server')
BASE = {'url': 'http://127.0.0.1:8420'}
CARDS = {  # card number -> (outcome, decline message); other Luhn-valid 16-digit numbers succeed
    '4242424242424242': ('paid', None),
    '4000000000000002': ('declined', 'Your card was declined.'),
    '4000000000009995': ('declined', 'Your card has insufficient funds.'),
    '4000000000000077': ('later', None),  # settles later, via POST /_config/checkout/{id}/settle
}
BRANDS = {'4': 'visa', '5': 'mastercard', '3': 'amex', '6': 'discover'}
DECIMALS = dict.fromkeys('bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf'.split(), 0) | \
    dict.fromkeys('bhd jod kwd omr tnd'.split(), 3)
ACCEPTED_EXTRA = {'locale', 'submit_type', 'billing_address_collection', 'allow_promotion_codes',
                  'customer_creation', 'payment_method_options'}
UI_MODES = ('hosted_page', 'embedded_page')  # API 2026-03-25.dahlia and later; 'hosted'/'embedded' are refused


def bad(message, param=None, code=None, status=400):
    return UserError(status, message, {k: v for k, v in (('param', param), ('code', code)) if v})


def emit(type, obj):
    webhooks.schedule_webhook(Event(type, obj))


def luhn_ok(number):
    digits = [int(d) for d in reversed(number)]
    return (sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])) % 10 == 0


def money(amount, currency):
    decimals = DECIMALS.get(currency, 2)
    return f'{amount / 10 ** decimals:,.{decimals}f} {currency.upper()}'


def parse_line_items(line_items, currency):
    if not line_items or not isinstance(line_items, list):
        raise bad('Missing required param: line_items.', 'line_items')
    items = []
    for i, item in enumerate(line_items):
        p = f'line_items[{i}]'
        if not isinstance(item.get('price_data'), dict):
            raise bad(f'This test server needs {p}[price_data] (it has no Prices).', f'{p}[price_data]')
        pd, qty = item['price_data'], try_convert_to_int(item.get('quantity'))
        unit, cur = try_convert_to_int(pd.get('unit_amount')), str(pd.get('currency') or '').lower()
        name = (pd.get('product_data') or {}).get('name')
        for value, param in ((cur, 'currency'), (name, 'product_data][name')):
            if not value:
                raise bad(f'Missing required param: {p}[price_data][{param}].', f'{p}[price_data][{param}]')
        if not isinstance(unit, int) or unit < 0:
            raise bad(f'Invalid integer: {pd.get("unit_amount")}', f'{p}[price_data][unit_amount]')
        if not isinstance(qty, int) or qty < 1:
            raise bad(f'Missing required param: {p}[quantity].', f'{p}[quantity]')
        if currency and cur != currency:
            raise bad('All line items must use the same currency.', f'{p}[price_data][currency]')
        currency = cur
        items.append({'id': 'li_' + random_id(14), 'object': 'item', 'description': name, 'quantity': qty,
                      'currency': cur, 'amount_subtotal': unit * qty, 'amount_total': unit * qty,
                      'price': {'object': 'price', 'currency': cur, 'unit_amount': unit, 'type': 'one_time'}})
    return items, currency


# --------------------------------------------------------------------------- Checkout Sessions
class CheckoutSession(StripeObject):
    object = 'checkout.session'
    _id_prefix = 'cs_test_'
    _pi: Any = None  # the PaymentIntent, made at the first payment attempt
    customer_details: dict[str, Any] | None

    def __init__(self, mode=None, line_items=None, currency=None, customer=None, customer_email=None,
                 client_reference_id=None, metadata=None, payment_intent_data=None, success_url=None,
                 cancel_url=None, expires_at=None, payment_method_types=None, ui_mode='hosted_page',
                 return_url=None, redirect_on_completion=None, **kwargs):
        unknown = sorted(set(kwargs) - ACCEPTED_EXTRA)
        if unknown:
            raise bad(f'Received unknown parameter: {unknown[0]}', unknown[0])
        if mode != 'payment':
            raise bad('Missing required param: mode.' if mode is None else
                      'This test server only supports mode=payment.', 'mode')
        if ui_mode not in UI_MODES:
            raise bad(f'Invalid ui_mode: must be one of {", ".join(UI_MODES)}', 'ui_mode')
        if ui_mode == 'embedded_page':  # like Stripe: a return_url, and neither success_url nor cancel_url
            for name, value in (('success_url', success_url), ('cancel_url', cancel_url)):
                if value:
                    raise bad(f'{name} is not allowed if ui_mode is `embedded_page`.', name)
            if not return_url:
                raise bad('Missing required param: return_url.', 'return_url')
            if redirect_on_completion not in (None, 'always'):
                raise bad('This test server only supports redirect_on_completion=always.', 'redirect_on_completion')
        elif not success_url:
            raise bad('Missing required param: success_url.', 'success_url')
        elif return_url or redirect_on_completion:
            raise bad('return_url is only allowed if ui_mode is `embedded_page`.', 'return_url')
        if customer and customer_email:
            raise bad('You may only specify one of these parameters: customer, customer_email.')
        if customer and store.get('customer:' + customer) is None:
            raise bad(f"No such customer: '{customer}'", 'customer', 'resource_missing')
        now = int(time.time())
        expires_at = now + 86400 if expires_at is None else try_convert_to_int(expires_at)
        if not isinstance(expires_at, int) or not now + 1795 <= expires_at <= now + 86405:
            raise bad('The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout '
                      'Session creation.', 'expires_at')
        pi_data = dict(payment_intent_data or {})
        unknown = sorted(set(pi_data) - {'metadata', 'description', 'receipt_email'})
        if unknown:
            raise bad(f'Received unknown parameter: payment_intent_data[{unknown[0]}]')
        items, currency = parse_line_items(line_items, currency.lower() if currency else None)
        # All exceptions must be raised before this point.
        super().__init__()
        total = sum(it['amount_total'] for it in items)
        self.__dict__.update(
            mode=mode, status='open', payment_status='unpaid', currency=currency, amount_subtotal=total,
            amount_total=total, total_details={'amount_discount': 0, 'amount_shipping': 0, 'amount_tax': 0},
            customer=customer, customer_email=customer_email, customer_details=None,
            client_reference_id=client_reference_id, payment_intent=None,
            metadata={k: v for k, v in (metadata or {}).items() if v != ''},
            payment_method_types=payment_method_types or ['card'], success_url=success_url,
            cancel_url=cancel_url, expires_at=expires_at, invoice=None, subscription=None, payment_link=None,
            ui_mode=ui_mode, return_url=return_url,
            redirect_on_completion='always' if ui_mode == 'embedded_page' else None,
            client_secret=None, **kwargs)
        if ui_mode == 'embedded_page':  # what Stripe.js mounts the embedded form with
            self.client_secret = f'{self.id}_secret_{random_id(24)}'
        self._items, self._pi_data = items, pi_data

    @property
    def url(self):  # like Stripe: only present while a hosted session can be paid
        if self.status != 'open' or self.ui_mode != 'hosted_page':
            return None
        return f"{BASE['url']}/_config/checkout/{self.id}"

    @property
    def _redirect_url(self):  # where the customer goes once paid: success_url, or an embedded form's return_url
        return (self.success_url or self.return_url).replace('{CHECKOUT_SESSION_ID}', self.id)

    @classmethod
    def _api_retrieve(cls, id):
        obj = store.get(cls.object + ':' + id)
        if obj is None:
            raise bad(f"No such checkout.session: '{id}'", 'session', 'resource_missing', 404)
        if obj.status == 'open' and time.time() >= obj.expires_at:
            obj._expire()
        return obj

    def _expire(self):
        self.status = 'expired'
        if self._pi is not None:
            self._pi._canceled = True
        emit('checkout.session.expired', self)

    def _pay(self, card, email):
        """One payment attempt from the hosted page. Returns a decline message, or None."""
        outcome, message = CARDS.get(card, ('paid', None))
        email = email or self.customer_email or (self.customer and store['customer:' + self.customer].email)
        self.customer_details = {'email': email or None, 'name': None, 'phone': None, 'address': None,
                                 'tax_exempt': 'none', 'tax_ids': []}
        if self.amount_total == 0:
            self.status, self.payment_status = 'complete', 'no_payment_required'
            return emit('checkout.session.completed', self)
        pm = PaymentMethod(type='card', billing_details={'email': email or None},
                           card={'number': card, 'exp_month': 12, 'exp_year': 2034, 'cvc': '123'})
        if self._pi is None:
            self._pi = PaymentIntent(amount=self.amount_total, currency=self.currency, customer=self.customer,
                                     metadata=dict(self._pi_data.get('metadata') or {}))
            self._pi.description = self._pi_data.get('description')
        pi = self._pi
        charge = Charge(amount=pi.amount, currency=pi.currency, customer=pi.customer, source=pm.id,
                        metadata=dict(pi.metadata), description=pi.description)
        charge.payment_intent, charge.receipt_email = pi.id, self._pi_data.get('receipt_email')
        charge.payment_method_details = {'type': 'card', 'card': {  # like Stripe's: brand and last 4 only
            'brand': BRANDS.get(card[:1], 'unknown'), 'last4': card[-4:], 'wallet': None,
            'exp_month': 12, 'exp_year': 2034, 'funding': 'credit', 'country': 'US'}}
        pi.payment_method, pi.latest_charge = pm.id, charge
        if outcome == 'declined':
            charge._set_auth_failure()
            charge.failure_message = message
            emit('charge.failed', charge)
            emit('payment_intent.payment_failed', pi)
            return message
        self.status, self.payment_intent = 'complete', pi.id
        if outcome == 'later':  # the charge stays pending, so the PaymentIntent is 'processing'
            emit('payment_intent.processing', pi)
        else:
            self._settle('succeeded', is_async=False)
        emit('checkout.session.completed', self)

    def _settle(self, outcome, is_async=True):
        charge = self._pi.latest_charge
        if outcome == 'succeeded':
            charge._trigger_payment()
            self.payment_status = 'paid'
        else:
            charge._set_auth_failure()
        emit('charge.' + ('succeeded' if outcome == 'succeeded' else 'failed'), charge)
        emit('payment_intent.' + ('succeeded' if outcome == 'succeeded' else 'payment_failed'), self._pi)
        if is_async:
            emit('checkout.session.async_payment_' + outcome, self)


async def create_session(request):
    data = dict(await server.get_post_data(request) or {})
    expand = data.pop('expand', None)
    kind = SetupSession if data.get('mode') == 'setup' else CheckoutSession
    return server.json_response(kind(**data)._export(expand=expand))


async def retrieve_session(request):
    expand = server.unflatten_data(request.query).get('expand')
    session = CheckoutSession._api_retrieve(request.match_info['id'])
    return server.json_response(session._export(expand=expand))


async def list_sessions(request):
    query = server.unflatten_data(request.query)
    filters = {k: query[k] for k in ('payment_intent', 'customer', 'status') if k in query}
    li = List('/v1/checkout/sessions', limit=query.get('limit'), starting_after=query.get('starting_after'))
    sessions = [CheckoutSession._api_retrieve(k.split(':', 1)[1]) for k in list(store)
                if k.startswith('checkout.session:')]
    li._list = sorted((s for s in sessions if all(getattr(s, k) == v for k, v in filters.items())),
                      key=lambda s: s.created, reverse=True)
    return server.json_response(li._export())


async def expire_session(request):
    session = CheckoutSession._api_retrieve(request.match_info['id'])
    if session.status != 'open':
        raise bad('Only Checkout Sessions with a status in ["open"] can be expired. '
                  f'This Checkout Session has a status of `{session.status}`.')
    session._expire()
    return server.json_response(session._export())


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Checkout (test)</title></head>
<body><main><h1>Pay <span id="amount" data-amount="{amount}" data-currency="{currency}">{money}</span></h1>
<ul>{items}</ul>{message}{form}</main></body></html>"""
FORM = """<form method="post" action="/_config/checkout/{id}/pay">
<p><label for="email">Email</label> <input id="email" name="email" type="email" value="{email}"></p>
<p><label for="card">Card number</label> <input id="card" name="card" inputmode="numeric"
 autocomplete="cc-number" placeholder="4242 4242 4242 4242"></p>
<p><button type="submit">Pay</button></p></form>"""


def render_page(session, message=None, status=200):
    e = html.escape
    message = {'expired': 'This Checkout Session has expired.',
               'complete': 'This Checkout Session is complete: the payment has been received.'
               }.get(session.status, message)
    form = ''
    if session.status == 'open':
        form = FORM.format(id=e(session.id), email=e(session.customer_email or ''))
        if session.cancel_url:
            form += f'<p><a id="cancel" href="{e(session.cancel_url)}">Cancel</a></p>'
    items = ''.join(f'<li>{it["quantity"]} × {e(it["description"])}: '
                    f'{money(it["amount_total"], it["currency"])}</li>' for it in session._items)
    body = PAGE.format(amount=session.amount_total, currency=e(session.currency), items=items, form=form,
                       money=money(session.amount_total, session.currency),
                       message=f'<p role="alert" id="message">{e(message)}</p>' if message else '')
    return web.Response(text=body, status=status, content_type='text/html')


def hosted_session(request):
    try:
        return CheckoutSession._api_retrieve(request.match_info['id'])
    except UserError:
        raise web.HTTPNotFound(text='No such Checkout Session.') from None


async def checkout_page(request):
    return render_page(hosted_session(request))


async def checkout_pay(request):
    session = hosted_session(request)
    form = await request.post()
    if session.status != 'open':
        return render_page(session, status=400)
    card = re.sub(r'[\s-]', '', form.get('card', ''))
    if card not in CARDS and not (len(card) == 16 and card.isdigit() and luhn_ok(card)):
        return render_page(session, 'Your card number is incorrect.', 402)
    declined = session._pay(card, form.get('email', '').strip())
    if declined:
        return render_page(session, declined, 402)
    raise web.HTTPSeeOther(session._redirect_url)


async def checkout_settle(request):
    session = hosted_session(request)
    outcome = (await server.get_post_data(request) or {}).get('outcome')
    if outcome not in ('succeeded', 'failed'):
        raise bad('outcome must be succeeded or failed', 'outcome')
    charge = session._pi and session._pi.latest_charge
    if session.status != 'complete' or not charge or charge.status != 'pending':
        raise bad('This Checkout Session has no payment waiting to settle.')
    session._settle(outcome)
    return server.json_response(session._export())


# --------------------------------------------------------------------------- Checkout in setup mode
class SetupSession(CheckoutSession):
    """mode=setup: a hosted page that saves a card for later, no payment. Built on localstripe's SetupIntent
    (made with the session, as at Stripe) and PaymentMethod; localstripe does not attach the card on confirm,
    so the page attaches it to the session's customer itself, as Checkout does."""

    _SETUP_DATA = {'metadata', 'description'}

    def __init__(self, mode=None, currency=None, customer=None, customer_email=None, client_reference_id=None,
                 metadata=None, setup_intent_data=None, success_url=None, cancel_url=None, expires_at=None,
                 payment_method_types=None, **kwargs):
        for param in ('line_items', 'payment_intent_data', 'submit_type'):
            if param in kwargs:
                raise bad(f'You cannot pass `{param}` in `setup` mode.', param)
        unknown = sorted(set(kwargs) - ACCEPTED_EXTRA)
        if unknown:
            raise bad(f'Received unknown parameter: {unknown[0]}', unknown[0])
        if not currency and not payment_method_types:
            raise bad('Missing required param: currency (setup mode needs it unless payment_method_types is '
                      'set).', 'currency')
        if not success_url:
            raise bad('Missing required param: success_url.', 'success_url')
        if customer and customer_email:
            raise bad('You may only specify one of these parameters: customer, customer_email.')
        if customer and store.get('customer:' + customer) is None:
            raise bad(f"No such customer: '{customer}'", 'customer', 'resource_missing')
        now = int(time.time())
        expires_at = now + 86400 if expires_at is None else try_convert_to_int(expires_at)
        if not isinstance(expires_at, int) or not now + 1795 <= expires_at <= now + 86405:
            raise bad('The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout '
                      'Session creation.', 'expires_at')
        si_data = dict(setup_intent_data or {})
        unknown = sorted(set(si_data) - self._SETUP_DATA)
        if unknown:
            raise bad(f'Received unknown parameter: setup_intent_data[{unknown[0]}]')
        # All exceptions must be raised before this point.
        StripeObject.__init__(self)
        intent = SetupIntent(customer=customer, metadata=dict(si_data.get('metadata') or {}))
        self.__dict__.update(
            mode='setup', status='open', payment_status='no_payment_required',
            currency=currency.lower() if currency else None, amount_subtotal=None, amount_total=None,
            customer=customer, customer_email=customer_email, customer_details=None,
            client_reference_id=client_reference_id, payment_intent=None, setup_intent=intent.id,
            metadata={k: v for k, v in (metadata or {}).items() if v != ''},
            payment_method_types=payment_method_types or ['card'], success_url=success_url,
            cancel_url=cancel_url, expires_at=expires_at, invoice=None, subscription=None, payment_link=None,
            **kwargs)
        self._items, self._pi_data, self._intent = [], {}, intent

    @property
    def url(self):
        return f"{BASE['url']}/_config/setup/{self.id}" if self.status == 'open' else None

    def _save_card(self, card, exp_month, exp_year, email):
        """One try on the hosted page. Returns why the card was not saved, or None."""
        try:
            pm = PaymentMethod(type='card', billing_details={'email': email or None},
                               card={'number': card, 'exp_month': exp_month, 'exp_year': exp_year, 'cvc': '123'})
            pm.card['brand'] = BRANDS.get(card[:1], 'unknown')  # localstripe calls every card a visa
            intent = SetupIntent._api_confirm(self._intent.id, payment_method=pm.id)
            if intent.status == 'requires_action':  # the 3D Secure cards: the cardholder approves here
                intent = SetupIntent._api_confirm(self._intent.id)
            if self.customer:
                PaymentMethod._api_attach(pm.id, customer=self.customer)
        except UserError as exc:
            return exc.body['error'].get('message') or 'Your card was declined.'
        self.status = 'complete'
        self.customer_details = {'email': email or self.customer_email or None, 'name': None, 'phone': None,
                                 'address': None, 'tax_exempt': 'none', 'tax_ids': []}
        emit('setup_intent.succeeded', intent)
        emit('checkout.session.completed', self)


CheckoutSession.setup_intent = None  # like Stripe: a payment session says `setup_intent: null` (and expands it)


SETUP_FORM = """<form method="post" action="/_config/setup/{id}/save">
<p><label for="email">Email</label> <input id="email" name="email" type="email" value="{email}"></p>
<p><label for="card">Card number</label> <input id="card" name="card" inputmode="numeric"
 autocomplete="cc-number" placeholder="4242 4242 4242 4242"></p>
<p><label for="expiry">Expiry (MM / YY)</label> <input id="expiry" name="expiry" autocomplete="cc-exp"
 placeholder="12 / 34"></p>
<p><button type="submit">Save card</button></p></form>"""


def render_setup_page(session, message=None, status=200):
    e = html.escape
    message = {'expired': 'This Checkout Session has expired.',
               'complete': 'This Checkout Session is complete: the card has been saved.'}.get(session.status, message)
    form = ''
    if session.status == 'open':
        form = SETUP_FORM.format(id=e(session.id), email=e(session.customer_email or ''))
        if session.cancel_url:
            form += f'<p><a id="cancel" href="{e(session.cancel_url)}">Cancel</a></p>'
    body = ('<!doctype html><html><head><meta charset="utf-8"><title>Save a card (test)</title></head><body><main>'
            '<h1>Save a card for later payments</h1>'
            + (f'<p role="alert" id="message">{e(message)}</p>' if message else '') + form + '</main></body></html>')
    return web.Response(text=body, status=status, content_type='text/html')


def hosted_setup(request):
    try:
        session = CheckoutSession._api_retrieve(request.match_info['id'])
    except UserError:
        raise web.HTTPNotFound(text='No such Checkout Session.') from None
    if not isinstance(session, SetupSession):
        raise web.HTTPNotFound(text='Not a setup-mode Checkout Session.')
    return session


async def setup_page(request):
    return render_setup_page(hosted_setup(request))


def parse_expiry(value):
    match = re.fullmatch(r'\s*(\d{1,2})\s*/\s*(\d{2}|\d{4})\s*', value or '')
    if not match:
        return None
    month, year = int(match.group(1)), int(match.group(2))
    return (month, year + 2000 if year < 100 else year) if 1 <= month <= 12 else None


async def setup_save(request):
    session = hosted_setup(request)
    form = await request.post()
    if session.status != 'open':
        return render_setup_page(session, status=400)
    card = re.sub(r'[\s-]', '', form.get('card', ''))
    if not (len(card) == 16 and card.isdigit() and luhn_ok(card)):
        return render_setup_page(session, 'Your card number is incorrect.', 402)
    expiry = parse_expiry(form.get('expiry', ''))
    if expiry is None:
        return render_setup_page(session, "Your card's expiration date is incomplete.", 402)
    today = time.gmtime()
    if (expiry[1], expiry[0]) < (today.tm_year, today.tm_mon):
        return render_setup_page(session, "Your card's expiration date is in the past.", 402)
    declined = session._save_card(card, expiry[0], expiry[1], form.get('email', '').strip())
    if declined:
        return render_setup_page(session, declined, 402)
    raise web.HTTPSeeOther(session.success_url.replace('{CHECKOUT_SESSION_ID}', session.id))


# --------------------------------------------------------------------------- refunds
class REFUNDS:  # fault: the next N refunds are created failed (POST /_config/faults {"refunds_fail": N})
    fail_next = 0


_refund_init = Refund.__init__


def refund_init(self, charge=None, payment_intent=None, amount=None, reason=None, **kwargs):
    ch = None
    if charge or payment_intent:
        ch = store.get('charge:' + charge) if charge else getattr(
            store.get('payment_intent:' + payment_intent), 'latest_charge', None)
    if ch is not None:  # like Stripe: refund what is left by default, and never more
        left = ch.amount - ch.amount_refunded
        if left <= 0:
            raise bad(f'Charge {ch.id} has already been refunded.', code='charge_already_refunded')
        amount = left if amount is None else amount
        if isinstance(try_convert_to_int(amount), int) and try_convert_to_int(amount) > left:
            raise bad(f'Refund amount ({amount}) is greater than unrefunded amount on charge ({left})',
                      'amount', 'amount_too_large')
    _refund_init(self, charge=charge, payment_intent=payment_intent, amount=amount, **kwargs)
    ch = Charge._api_retrieve(self.charge)
    self.payment_intent, self.reason = self.payment_intent or ch.payment_intent, reason
    if REFUNDS.fail_next:  # the card network refuses it at once (e.g. a closed card account)
        REFUNDS.fail_next -= 1
        self.status, self.failure_reason = 'failed', 'expired_or_canceled_card'
        emit('refund.created', self)
        emit('refund.failed', self)
        return
    emit('refund.created', self)
    emit('charge.refunded', ch)


Refund.__init__ = refund_init
# Like Stripe: a failed or canceled refund gives the money back to the charge (it can be refunded again).
Charge.amount_refunded = property(lambda self: sum(r.amount for r in self.refunds._list
                                                   if getattr(r, 'status', None) not in ('failed', 'canceled')))


async def refund_fail(request):
    """The card network sends a refund back days later (or it is canceled): status failed with a
    failure_reason, and the events Stripe sends for it: refund.updated, charge.refund.updated, refund.failed."""
    refund = Refund._api_retrieve(request.match_info['id'])
    data = await server.get_post_data(request) or {}
    status = data.get('status', 'failed')
    if status not in ('failed', 'canceled'):
        raise bad('status must be failed or canceled', 'status')
    if refund.status not in ('pending', 'succeeded'):
        raise bad(f'Refund {refund.id} is {refund.status}; only a pending or succeeded refund can fail.')
    refund.status = status
    refund.failure_reason = data.get('failure_reason', 'expired_or_canceled_card') if status == 'failed' else None
    emit('refund.updated', refund)
    emit('charge.refund.updated', refund)
    if status == 'failed':
        emit('refund.failed', refund)
    return server.json_response(refund._export())

# --------------------------------------------------------------------------- off-session declines
# localstripe declines off-session charges only for a few cards, with a bare `card_declined` (no decline_code,
# advice_code or payment_intent in the error) and answers 200 requires_action for 3D Secure cards. Stripe answers
# 402 card_error with all of those, the PaymentIntent left in requires_payment_method with last_payment_error.
# Here: the 3D Secure cards give authentication_required and the charge-declined cards generic_decline off-session,
# and POST /_config/payment_methods/{id}/outcomes {"outcomes": ["insufficient_funds", "succeeded"]} scripts what
# the next off-session charges of a card do (one outcome per charge; then back to the card's own behaviour).
DECLINES = {  # decline_code -> (code, advice_code, message), as Stripe's test cards answer
    'generic_decline': ('card_declined', 'try_again_later', 'Your card was declined.'),
    'insufficient_funds': ('card_declined', 'try_again_later', 'Your card has insufficient funds.'),
    'processing_error': ('processing_error', 'try_again_later',
                         'An error occurred while processing your card. Try again in a little bit.'),
    'do_not_honor': ('card_declined', None, 'Your card was declined.'),
    'lost_card': ('card_declined', 'do_not_try_again', 'Your card was declined.'),
    'stolen_card': ('card_declined', 'do_not_try_again', 'Your card was declined.'),
    'expired_card': ('expired_card', 'confirm_card_data', 'Your card has expired.'),
    'incorrect_number': ('incorrect_number', None, 'Your card number is incorrect.'),
    'authentication_required': ('authentication_required', None,
                                'Your card was declined. This transaction requires authentication.'),
}
SCRIPTS: dict[str, list[str]] = {}  # payment method id -> the outcomes of its next off-session charges


class CardError(UserError):
    def __init__(self, message, contents):
        super().__init__(402, message, contents)
        self.body['error']['type'] = 'card_error'


def off_session_outcome(pm_id):
    if SCRIPTS.get(pm_id):
        return SCRIPTS[pm_id].pop(0)
    pm = store.get('payment_method:' + pm_id) if pm_id else None
    if pm is None or pm.type != 'card':
        return None
    if pm._requires_authentication():
        return 'authentication_required'
    return 'generic_decline' if pm._charging_is_declined() else None


_pi_create = PaymentIntent._api_create.__func__
_pi_error = PaymentIntent.last_payment_error


def pi_create(cls, confirm=None, off_session=None, **data):
    outcome = None
    if resources.try_convert_to_bool(confirm) and resources.try_convert_to_bool(off_session):
        outcome = off_session_outcome(data.get('payment_method'))
    if outcome in (None, 'succeeded'):
        return _pi_create(cls, confirm=confirm, off_session=off_session, **data)
    if outcome not in DECLINES:
        raise bad(f'unknown scripted outcome {outcome}')
    intent = _pi_create(cls, **data)  # created, not confirmed
    code, advice, message = DECLINES[outcome]
    charge = Charge(amount=intent.amount, currency=intent.currency, customer=intent.customer,
                    source=intent.payment_method, metadata=dict(intent.metadata))
    charge.payment_intent, charge.status = intent.id, 'failed'
    charge.failure_code, charge.failure_message = code, message
    intent.latest_charge = charge  # -> status requires_payment_method
    intent._error = {'type': 'card_error', 'code': code, 'decline_code': outcome, 'advice_code': advice,
                     'message': message, 'charge': charge.id, 'payment_method': {'id': intent.payment_method,
                                                                                 'object': 'payment_method'}}
    emit('payment_intent.payment_failed', intent)
    raise CardError(message, {**intent._error, 'payment_intent': intent._export()})


PaymentIntent._api_create = classmethod(pi_create)
PaymentIntent.last_payment_error = property(lambda self: getattr(self, '_error', None) or _pi_error.fget(self))


async def script_outcomes(request):
    data = await server.get_post_data(request) or {}
    outcomes = list(data.get('outcomes') or [])
    unknown = [o for o in outcomes if o != 'succeeded' and o not in DECLINES]
    if unknown:
        raise bad(f'unknown outcome {unknown[0]}; use succeeded or one of {", ".join(DECLINES)}', 'outcomes')
    SCRIPTS[request.match_info['id']] = outcomes
    return web.json_response({'payment_method': request.match_info['id'], 'outcomes': outcomes})


async def counts(request):
    """How many of each object the server holds (e.g. PaymentIntents: a test counts the charges made)."""
    kinds = ('payment_intent', 'charge', 'refund', 'customer', 'payment_method')
    return web.json_response({kind + 's': sum(1 for key in store if key.startswith(kind + ':')) for kind in kinds})


# --------------------------------------------------------------------------- webhooks
class WH:  # webhook delivery settings
    paused, duplicates, delay, generation = False, 0, 0.0, 0
    in_flight = 0  # deliveries posted and not answered yet
    held: list[Any] = []  # events kept while paused


QUEUE: asyncio.Queue[Any] = asyncio.Queue()  # (due time, generation, event), sent in order by one worker


def schedule_webhook(event):
    QUEUE.put_nowait((time.monotonic() + WH.delay, WH.generation, event))


resources.schedule_webhook = webhooks.schedule_webhook = schedule_webhook


async def deliver(event):  # signed like localstripe (and Stripe): v1 = HMAC-SHA256(secret, "{t}.{body}")
    payload = json.dumps(event._export(), indent=2, sort_keys=True).encode('utf-8')
    for hook in list(webhooks._webhooks.values()):
        if hook.events is not None and event.type not in hook.events:
            continue
        t = int(time.time())
        sig = hmac.new(hook.secret.encode('utf-8'), b'%d.%s' % (t, payload), hashlib.sha256).hexdigest()
        headers = {'Content-Type': 'application/json; charset=utf-8', 'Stripe-Signature': f't={t},v1={sig}'}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http, \
                    http.post(hook.url, data=payload, headers=headers) as r:
                if r.status >= 300:
                    log.warning('webhook %s to %s: HTTP %d', event.type, hook.url, r.status)
        except (aiohttp.ClientError, TimeoutError) as e:
            log.warning('webhook %s to %s failed: %r', event.type, hook.url, e)


async def webhook_worker():
    while True:
        due, generation, event = await QUEUE.get()
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if generation != WH.generation:
            continue  # emitted before a reset
        if WH.paused:
            WH.held.append(event)
            continue
        WH.in_flight += 1
        try:
            for _ in range(1 + WH.duplicates):
                await deliver(event)
        finally:
            WH.in_flight -= 1


async def webhook_worker_ctx(app):
    task = asyncio.ensure_future(webhook_worker())
    yield
    task.cancel()


def set_webhook_mode(mode):
    if mode not in ('pause', 'resume', 'drop'):
        raise bad('webhooks must be pause, resume or drop', 'webhooks')
    if mode == 'pause':
        WH.paused = True
        return
    held, WH.held, WH.paused = WH.held, [], False
    for event in held if mode == 'resume' else []:  # 'drop' discards them
        QUEUE.put_nowait((0.0, WH.generation, event))


# --------------------------------------------------------------------------- faults + idempotency
FAULTS: list[dict[str, Any]] = []
# (api key, Idempotency-Key) -> 'in-flight' | (path, params hash, status, body)
IDEMPOTENCY: dict[tuple[Any, str], Any] = {}
CONTROL_PATHS = ('/_config/faults', '/_config/data', '/_config/webhooks', '/_config/health',
                 '/_config/payment_methods', '/_config/counts')


def error_json(status, type, message):
    return web.json_response({'error': {'type': type, 'message': message}}, status=status)


def take_fault(request):
    for fault in [] if request.path.startswith(CONTROL_PATHS) else FAULTS:
        if request.path.startswith(fault['path_prefix']) and fault['method'] in ('*', request.method):
            fault['count'] -= 1
            if fault['count'] <= 0:
                FAULTS.remove(fault)
            return fault


def drop_connection(request):
    request.transport.abort()
    raise asyncio.CancelledError  # nothing is written: the client sees the connection close


@web.middleware
async def launcher_middleware(request, handler):
    if request.method == 'DELETE' and request.path == '/_config/data':
        IDEMPOTENCY.clear()
        SCRIPTS.clear()
        WH.held.clear()
        WH.generation += 1
    fault = take_fault(request)
    mode = fault and fault['mode']
    if mode == 'drop_before':
        drop_connection(request)
    if mode == 'error_500':
        return error_json(500, 'api_error', 'Injected fault: an error occurred with our API (test server).')
    key = request.headers.get('Idempotency-Key')
    key = key and request.method == 'POST' and request.path.startswith('/v1/') and \
        (server.get_api_key(request), key)
    if key:
        params = await server.get_post_data(request, remove_auth=False)
        digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
        cached = IDEMPOTENCY.get(key)
        if cached == 'in-flight':
            return error_json(409, 'idempotency_error', 'There is currently another in-progress request '
                              f'using this API key and idempotency key ({key[1]}). Please try again later.')
        if cached and cached[:2] != (request.path, digest):
            return error_json(400, 'idempotency_error', 'Keys for idempotent requests can only be used with '
                              'the same parameters they were first used with. Try using a key other than '
                              f'"{key[1]}" if you meant to execute a different request.')
        if cached:
            return web.Response(body=cached[3], status=cached[2], content_type='application/json',
                                headers={'Idempotent-Replayed': 'true', 'Idempotency-Key': key[1]})
        IDEMPOTENCY[key] = 'in-flight'
    try:
        if mode == 'delay':
            await asyncio.sleep(fault['seconds'])
        response = await handler(request)
    except BaseException:
        IDEMPOTENCY.pop(key, None)
        raise
    if key and response.status in (400, 401, 404, 409, 429):  # like Stripe: failed validation isn't saved
        IDEMPOTENCY.pop(key)
    elif key:
        IDEMPOTENCY[key] = (request.path, digest, response.status, response.body)
        response.headers['Idempotency-Key'] = key[1]
    if mode == 'drop_after':
        drop_connection(request)
    if mode == 'delay_after':  # done and remembered, but the answer is late (a client that gives up, or is killed)
        await asyncio.sleep(fault['seconds'])
    return response


async def set_faults(request):
    data = await server.get_post_data(request) or {}
    for spec in data if isinstance(data, list) else [data]:
        if 'webhooks' in spec:
            set_webhook_mode(spec['webhooks'])
        if 'webhook_duplicates' in spec:
            WH.duplicates = int(spec['webhook_duplicates'])
        if 'webhook_delay' in spec:
            WH.delay = float(spec['webhook_delay'])
        if 'refunds_fail' in spec:
            REFUNDS.fail_next = int(spec['refunds_fail'])
        if 'mode' in spec:
            if spec['mode'] not in ('error_500', 'drop_before', 'drop_after', 'delay', 'delay_after'):
                raise bad('mode must be error_500, drop_before, drop_after, delay or delay_after', 'mode')
            FAULTS.append({'path_prefix': spec.get('path_prefix', '/v1/'), 'mode': spec['mode'],
                           'method': str(spec.get('method', '*')).upper(), 'count': int(spec.get('count', 1)),
                           'seconds': float(spec.get('seconds', 1.0))})
    return await get_faults(request)


async def get_faults(request):
    return web.json_response({'faults': FAULTS, 'webhooks': 'paused' if WH.paused else 'running',
                              'held_webhooks': len(WH.held), 'webhook_duplicates': WH.duplicates,
                              'webhook_delay': WH.delay})


async def clear_faults(request):
    FAULTS.clear()
    WH.duplicates, WH.delay = 0, 0.0
    REFUNDS.fail_next = 0
    set_webhook_mode('resume')
    return await get_faults(request)


async def delete_webhooks(request):
    """Unregister, then answer once no delivery is in flight: after that nothing reaches the old URL (a test
    that empties its tables next must not see a late delivery write into them)."""
    for id in [request.match_info['id']] if 'id' in request.match_info else list(webhooks._webhooks):
        webhooks._webhooks.pop(id, None)
    deadline = time.monotonic() + 15
    while WH.in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return web.Response()


async def health(request):
    return web.Response(text='stripe_server ok')


ROUTES = (
    ('POST', '/v1/checkout/sessions', create_session),
    ('GET', '/v1/checkout/sessions', list_sessions),
    ('GET', '/v1/checkout/sessions/{id}', retrieve_session),
    ('POST', '/v1/checkout/sessions/{id}/expire', expire_session),
    ('GET', '/_config/checkout/{id}', checkout_page),
    ('POST', '/_config/checkout/{id}/pay', checkout_pay),
    ('POST', '/_config/checkout/{id}/settle', checkout_settle),
    ('GET', '/_config/setup/{id}', setup_page),
    ('POST', '/_config/setup/{id}/save', setup_save),
    ('POST', '/_config/refunds/{id}/fail', refund_fail),
    ('POST', '/_config/payment_methods/{id}/outcomes', script_outcomes),
    ('GET', '/_config/counts', counts),
    ('GET', '/_config/faults', get_faults),
    ('POST', '/_config/faults', set_faults),
    ('DELETE', '/_config/faults', clear_faults),
    ('DELETE', '/_config/webhooks', delete_webhooks),
    ('DELETE', '/_config/webhooks/{id}', delete_webhooks),
    ('GET', '/_config/health', health))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--port', type=int, default=8420)
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--verbose', action='store_true', help='log every request to stderr')
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    app = server.app
    app.middlewares.insert(0, launcher_middleware)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    app.cleanup_ctx.append(webhook_worker_ctx)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    BASE['url'] = f'http://{args.host}:{sock.getsockname()[1]}'
    print('READY ' + BASE['url'], flush=True)
    web.run_app(app, sock=sock, print=None,
                access_log=logging.getLogger('aiohttp.access') if args.verbose else None)


if __name__ == '__main__':
    main()
