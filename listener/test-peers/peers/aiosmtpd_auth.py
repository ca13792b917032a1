"""A smarthost that really checks credentials, for postern-outbound's AUTH tests.

aiosmtpd with an authenticator, on two ports: STARTTLS (TLS required before AUTH and
mail) and implicit TLS. The username and password are read from files, as a mounted
Kubernetes Secret would hold them.

usage: aiosmtpd_auth.py CERT KEY USERNAME_FILE PASSWORD_FILE
prints: READY <starttls port> <implicit port> <implicit port offering only AUTH LOGIN>,
then one line per AUTH and delivery.
"""

import logging
import socket
import ssl
import sys
import time
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Handler:
    async def handle_DATA(self, server, session, envelope):
        print(
            f"DELIVERED auth={session.authenticated} from={envelope.mail_from} "
            f"to={','.join(envelope.rcpt_tos)} bytes={len(envelope.content)}",
            flush=True,
        )
        return "250 2.0.0 OK"


def authenticator(username, password):
    def check(server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = auth_data.login == username and auth_data.password == password
        print(f"AUTH {mechanism} {'ok' if ok else 'failed'}", flush=True)
        # handled=False: aiosmtpd sends its own 535 5.7.8 for a failure.
        return AuthResult(success=ok, handled=False)

    return check


def main():
    # The implicit-TLS port requires AUTH without "requiring TLS" (it is TLS from the
    # first byte); aiosmtpd warns about that on every start.
    warnings.filterwarnings("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    cert, key, user_file, password_file = sys.argv[1:5]
    username = open(user_file, "rb").read().strip()
    password = open(password_file, "rb").read().strip()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    check = authenticator(username, password)

    def server(**tls):
        """A controller on a free port that requires AUTH checked by `check`."""
        return Controller(
            Handler(),
            hostname="127.0.0.1",
            port=free_port(),
            server_hostname="smarthost.test",
            authenticator=check,
            auth_required=True,
            **tls,
        )

    starttls = server(tls_context=context, require_starttls=True, auth_require_tls=True)
    implicit = server(ssl_context=context, auth_require_tls=False)
    login_only = server(
        ssl_context=context, auth_require_tls=False, auth_exclude_mechanism=["PLAIN"]
    )
    servers = [starttls, implicit, login_only]
    for server in servers:
        server.start()
    print(f"READY {starttls.port} {implicit.port} {login_only.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
