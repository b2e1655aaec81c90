"""A real SMTP server for rampart-ship's mail tests: Debian's aiosmtpd on a loopback port,
STARTTLS required before MAIL, AUTH required (and only after TLS).

usage: smtp_server.py CERT KEY OUTDIR USER PASSWORD
Prints "READY <port>" once listening; writes each message to OUTDIR/NNNNN.json
({"from", "to", "login", "tls", "data", "subject", "body"}); exits when stdin closes.
"""
import email
import email.policy
import json
import os
import socket
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

cert, key, outdir, user, password = sys.argv[1:6]


class Handler:
    def __init__(self):
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        login = getattr(session, "x_login", None) if session.authenticated else None
        rec = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "login": login,
            "tls": session.ssl is not None,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        # As a mail client reads it: headers decoded, body transfer-decoded.
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        rec["subject"] = str(msg["subject"])
        rec["body"] = msg.get_content()
        path = os.path.join(outdir, "%05d.json" % self.n)
        with open(path + ".tmp", "w") as f:
            json.dump(rec, f)
        os.rename(path + ".tmp", path)
        return "250 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == user.encode()
        and auth_data.password == password.encode()
    )
    if ok:
        session.x_login = auth_data.login.decode()
    return AuthResult(success=ok)


ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
controller = Controller(
    Handler(),
    hostname="127.0.0.1",
    port=port,
    tls_context=ctx,
    require_starttls=True,
    authenticator=authenticator,
    auth_required=True,
    auth_require_tls=True,
)
controller.start()
print("READY %d" % port, flush=True)
sys.stdin.read()
controller.stop()
