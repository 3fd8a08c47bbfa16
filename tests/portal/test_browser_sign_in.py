"""In a real browser at a phone's width, against the served app and a real SMTP server: ask for a sign-in link,
read it from the email, sign in, choose a password, sign out, sign in with the password."""

from __future__ import annotations

import re

from tests.conftest import World
from tests.portal.support import NEW_PASSWORD


def test_a_contact_signs_in_by_email_then_with_a_chosen_password(browser, live_server_factory, world: World, smtp,
                                                                  runner) -> None:
    contact = world.client_a.contacts[0]
    server = live_server_factory(MAIL_SERVER=smtp.host, MAIL_PORT=str(smtp.port), MAIL_USE_TLS="0")
    context = browser.new_context(viewport={"width": 390, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(f"{server.url}/portal/login")
        page.locator("#link-email").fill(contact.email)
        page.get_by_role("button", name="Email me a sign-in link").click()
        page.get_by_role("heading", name="Check your email").wait_for()

        result = runner.invoke(args=["billing", "deliver-mail"])
        assert result.exit_code == 0 and "1 sent" in result.output, result.output
        [message] = smtp.wait_for(1)
        assert message["To"] == contact.email and "Org A" in message["Subject"]
        [link] = re.findall(r"https?://\S+/portal/login/[\w-]+", message.get_body(("plain",)).get_content())
        assert link.startswith(server.url)

        page.goto(link)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{server.url}/portal/")
        assert page.get_by_role("heading", level=1).inner_text() == "Client A"

        page.get_by_role("navigation", name="Portal").get_by_role("link", name="Account").click()
        page.get_by_label("New password (at least 10 characters)").fill(NEW_PASSWORD)
        page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Save password").click()
        page.get_by_text("Your password is saved").wait_for()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{server.url}/portal/login")
        page.locator("#password-email").fill(contact.email)
        page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
        page.get_by_role("button", name="Sign in with password").click()
        page.wait_for_url(f"{server.url}/portal/")
        assert page.get_by_role("heading", level=1).inner_text() == "Client A"
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()
