"""The `email` channel: one message per event, plain text and HTML, over SMTP.

Uses the standard library's `smtplib` in a worker thread (no extra dependency): a mail is
small and rare next to envelopes, so one short-lived connection per notification is fine.
`SWITCHBOARD_SMTP_URL` is `smtp://[user:password@]host:port` (STARTTLS when the server offers
it) or `smtps://…` (TLS from the start). The `Message-ID` is made from the event id and the
channel, so a retried notification is recognisably the same mail.
"""

from __future__ import annotations

import asyncio
import html
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

from gateway.delivery.worker import Attempt
from gateway.notify import Notification, digest, headline


def mail(event: dict[str, Any], sender: str, to: str, message_id: str) -> EmailMessage:
    """The message for one event: a plain-text body and an HTML alternative."""
    laid_out = digest(event)
    lines = [headline(event), ""]
    lines += [f"{label}: {value}" for label, value in laid_out.facts]
    lines += ["", laid_out.text]
    if laid_out.summary:
        lines += ["", "Summary:", laid_out.summary]
    lines += ["", f"{laid_out.link_label}: {laid_out.link}"]
    facts = "<br>".join(
        f"<b>{html.escape(label)}:</b> {html.escape(value)}" for label, value in laid_out.facts
    )
    summary = f"<pre>{html.escape(laid_out.summary)}</pre>" if laid_out.summary else ""
    message = EmailMessage()
    message["Subject"] = headline(event)
    message["From"] = sender
    message["To"] = to
    message["Message-ID"] = message_id
    message.set_content("\n".join(lines))
    message.add_alternative(
        "<html><body>"
        f"<h2>{html.escape(headline(event))}</h2>"
        f"<p>{facts}</p>"
        f"<p>{html.escape(laid_out.text)}</p>"
        f"{summary}"
        f'<p><a href="{html.escape(laid_out.link, quote=True)}">'
        f"{html.escape(laid_out.link_label)}</a></p>"
        "</body></html>",
        subtype="html",
    )
    return message


class EmailChannel:
    """Sends one notification as an email through the configured SMTP server."""

    def __init__(self, smtp_url: str, sender: str, to: str, *, timeout: float = 15.0) -> None:
        parts = urlsplit(smtp_url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"expected smtp://host:port or smtps://host:port, got {smtp_url!r}")
        self._tls = parts.scheme == "smtps"
        self._host = parts.hostname
        self._port = parts.port or (465 if self._tls else 25)
        self._user = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._sender = sender
        self._to = to
        self._timeout = timeout

    async def send(self, notification: Notification) -> Attempt:
        domain = self._sender.rpartition("@")[2] or "switchboard"
        message_id = f"<{notification.id}.{notification.channel}@{domain}>"
        message = mail(notification.event, self._sender, self._to, message_id)
        try:
            await asyncio.to_thread(self._deliver, message)
        except smtplib.SMTPRecipientsRefused as exc:
            return Attempt.final(f"the mail server refused {self._to}: {exc.recipients}")
        except smtplib.SMTPResponseException as exc:
            detail = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
            if 500 <= exc.smtp_code < 600:
                return Attempt.final(detail)
            return Attempt.retry(detail)
        except (OSError, smtplib.SMTPException) as exc:
            return Attempt.retry(f"could not reach {self._host}:{self._port}: {exc}")
        return Attempt.ok(note=f"mailed to {self._to}")

    def _deliver(self, message: EmailMessage) -> None:
        client: smtplib.SMTP
        if self._tls:
            client = smtplib.SMTP_SSL(
                self._host, self._port, timeout=self._timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        with client:
            client.ehlo()
            if not self._tls and client.has_extn("starttls"):
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if self._user is not None:
                client.login(self._user, self._password or "")
            client.send_message(message)
