"""Delivery channels: e-mail over SMTP (STARTTLS, AUTH) and SMS through a provider interface with one
adapter, Twilio's Programmable Messaging API (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`,
form fields To / From or MessagingServiceSid / Body, HTTP Basic auth AccountSid:AuthToken, 201 with the
message resource (`sid`), errors as JSON `{code, message, more_info, status}`).

A channel raises TemporaryFailure (retried with backoff) or PermanentFailure (dead letter at once).
Idempotency: neither SMTP nor Twilio's Messages API takes an idempotency key. The delivery id is the
e-mail's Message-ID (mail systems drop a repeated Message-ID in many setups) and its X-NRM-Delivery-Id; a
delivery recorded as sent is never sent again; the one window left is a crash between the provider's
acceptance and the record of it, which sends that message twice (at-least-once)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

import aiosmtplib
import httpx

from services.notifications.settings import NotificationSettings


class DeliveryFailure(Exception):
    pass


class TemporaryFailure(DeliveryFailure):
    """Worth retrying: the server is away, busy, or answered 4xx/5xx that may pass."""


class PermanentFailure(DeliveryFailure):
    """Retrying cannot help (no channel configured, address refused, request refused)."""


@dataclass(frozen=True)
class Outgoing:
    delivery_id: str
    address: str
    subject: str
    body: str
    sms: str
    language: str


class Channel(Protocol):
    async def send(self, msg: Outgoing) -> str: ...


class EmailChannel:
    def __init__(self, settings: NotificationSettings) -> None:
        self.s = settings

    def _tls(self) -> ssl.SSLContext | None:
        if self.s.smtp_ca_file is None:
            return None
        return ssl.create_default_context(cafile=str(self.s.smtp_ca_file))

    async def send(self, msg: Outgoing) -> str:
        s = self.s
        if not s.smtp_host:
            raise PermanentFailure("no SMTP server configured (NRM_SMTP_HOST)")
        m = EmailMessage()
        m["From"] = s.smtp_from
        m["To"] = msg.address
        m["Subject"] = msg.subject
        m["Date"] = formatdate(localtime=False)
        m["Message-ID"] = make_msgid(idstring=msg.delivery_id, domain="nrm.invalid")
        m["X-NRM-Delivery-Id"] = msg.delivery_id
        m["Content-Language"] = msg.language
        m.set_content(msg.body)
        try:
            errors, answer = await aiosmtplib.send(
                m,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password,
                start_tls=s.smtp_starttls,
                tls_context=self._tls() if s.smtp_starttls else None,
                timeout=s.smtp_timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [e.code for e in exc.recipients]
            if any(400 <= c < 500 for c in codes):
                raise TemporaryFailure(f"recipient refused for now: {codes}") from exc
            raise PermanentFailure(f"recipient refused: {codes}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            text = f"SMTP {exc.code}: {exc.message}"
            if 500 <= exc.code < 600 and not isinstance(exc, aiosmtplib.SMTPAuthenticationError):
                raise PermanentFailure(text) from exc
            raise TemporaryFailure(text) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TemporaryFailure(f"SMTP: {type(exc).__name__}: {exc}") from exc
        if errors:
            raise PermanentFailure(
                f"recipient refused: {sorted(str(v.code) for v in errors.values())}"
            )
        return f"smtp:{answer.split()[0] if answer else 'ok'}"


class SmsProvider(Protocol):
    async def send(self, msg: Outgoing) -> str: ...


class TwilioSms:
    """Twilio Messages API. `NRM_TWILIO_BASE_URL` exists for tests (a local server speaking this API)."""

    def __init__(self, settings: NotificationSettings) -> None:
        self.s = settings

    async def send(self, msg: Outgoing) -> str:
        s = self.s
        if not (
            s.twilio_account_sid
            and s.twilio_auth_token
            and (s.twilio_from or s.twilio_messaging_service_sid)
        ):
            raise PermanentFailure(
                "Twilio is not configured (NRM_TWILIO_ACCOUNT_SID, _AUTH_TOKEN, _FROM)"
            )
        url = f"{s.twilio_base_url.rstrip('/')}/2010-04-01/Accounts/{s.twilio_account_sid}/Messages.json"
        form = {"To": msg.address, "Body": msg.sms}
        if s.twilio_messaging_service_sid:
            form["MessagingServiceSid"] = s.twilio_messaging_service_sid
        else:
            form["From"] = s.twilio_from or ""
        try:
            async with httpx.AsyncClient(timeout=s.sms_timeout_seconds) as http:
                r = await http.post(
                    url, data=form, auth=(s.twilio_account_sid, s.twilio_auth_token)
                )
        except httpx.HTTPError as exc:
            raise TemporaryFailure(f"SMS provider unreachable: {type(exc).__name__}") from exc
        if r.status_code in (200, 201):
            try:
                return f"twilio:{r.json()['sid']}"
            except (ValueError, KeyError) as exc:
                raise TemporaryFailure("SMS provider answered without a message sid") from exc
        try:
            err = r.json()
            detail = f"Twilio {r.status_code} code {err.get('code')}: {err.get('message')}"
        except ValueError:
            detail = f"Twilio {r.status_code}"
        if r.status_code == 429 or r.status_code >= 500:
            raise TemporaryFailure(detail)
        raise PermanentFailure(detail)


def sms_provider(settings: NotificationSettings) -> SmsProvider | None:
    return TwilioSms(settings) if settings.sms_provider == "twilio" else None
