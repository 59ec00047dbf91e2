"""Real local servers for the notification tests: an SMTP server (aiosmtpd) that requires STARTTLS with a
self-signed certificate made here and AUTH, and an HTTP server speaking Twilio's Messages API. Both can
be told to fail the next N requests."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SMTP_USER = "nrm-mailer"
SMTP_PASSWORD = "s3cret-smtp"
TWILIO_SID = "AC" + "0" * 30 + "12"
TWILIO_TOKEN = "twilio-auth-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass
class Mail:
    rcpt: list[str]
    msg: EmailMessage
    raw: bytes
    tls: bool
    authenticated: bool

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", "replace") + "\n" + str(self.msg.get_content())


@dataclass
class SmtpHandler:
    received: list[Mail] = field(default_factory=list)
    fail_next: int = 0  # answer 451 to this many messages
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                self.refused += 1
                return "451 4.3.0 Temporary local problem, try again"
            raw = bytes(envelope.original_content or envelope.content)
            msg = message_from_bytes(raw, policy=policy.default)
            assert isinstance(msg, EmailMessage)
            self.received.append(
                Mail(
                    list(envelope.rcpt_tos),
                    msg,
                    raw,
                    session.ssl is not None,
                    bool(session.authenticated),
                )
            )
        return "250 2.0.0 OK"


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == SMTP_USER.encode()
        and auth_data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)


class SmtpServer:
    """STARTTLS required, AUTH PLAIN/LOGIN required (only over TLS)."""

    def __init__(self, folder: Path) -> None:
        self.cert, key = self_signed(folder)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, key)
        self.port = free_port()
        self.handler = SmtpHandler()
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=ctx,
            require_starttls=True,
            authenticator=_authenticator,
            auth_required=True,
            auth_require_tls=True,
        )

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Mail]:
        with self.handler.lock:
            return list(self.handler.received)


class _TwilioHandler(BaseHTTPRequestHandler):
    server: TwilioServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        srv = self.server
        length = int(self.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        expected = f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
        auth = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
        if self.headers.get("Authorization") != auth:
            self._answer(
                401,
                {
                    "code": 20003,
                    "message": "Authenticate",
                    "more_info": "https://www.twilio.com/docs/errors/20003",
                    "status": 401,
                },
            )
            return
        if self.path != expected:
            self._answer(
                404,
                {
                    "code": 20404,
                    "message": "The requested resource was not found",
                    "more_info": "https://www.twilio.com/docs/errors/20404",
                    "status": 404,
                },
            )
            return
        if (
            not form.get("To")
            or not form.get("Body")
            or not (form.get("From") or form.get("MessagingServiceSid"))
        ):
            self._answer(
                400,
                {
                    "code": 21604,
                    "message": "A 'To' phone number is required.",
                    "more_info": "https://www.twilio.com/docs/errors/21604",
                    "status": 400,
                },
            )
            return
        with srv.lock:
            srv.requests += 1
            if srv.always_fail or srv.fail_next > 0:
                srv.fail_next = max(0, srv.fail_next - 1)
                self._answer(
                    503,
                    {
                        "code": 20503,
                        "message": "Service Unavailable",
                        "more_info": "https://www.twilio.com/docs/errors/20503",
                        "status": 503,
                    },
                )
                return
            sid = "SM" + uuid.uuid4().hex
            srv.messages.append({"sid": sid, **form})
        self._answer(
            201,
            {
                "sid": sid,
                "account_sid": TWILIO_SID,
                "to": form["To"],
                "from": form.get("From"),
                "body": form["Body"],
                "status": "queued",
                "num_segments": "1",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "price": None,
                "error_code": None,
                "uri": f"{expected[:-5]}/{sid}.json",
            },
        )


class TwilioServer(ThreadingHTTPServer):
    """Speaks Twilio's Messages API (create message) on 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TwilioHandler)
        self.lock = threading.Lock()
        self.messages: list[dict[str, str]] = []
        self.requests = 0
        self.fail_next = 0
        self.always_fail = False
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> TwilioServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
