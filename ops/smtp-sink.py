#!/usr/bin/env python3
"""A real SMTP server for the tests: accepts every message and keeps it verbatim.

    python3 ops/smtp-sink.py PORT DIR [--exit-on-stdin-eof]

Listens on 127.0.0.1:PORT (no auth, no TLS; 8BITMIME and SMTPUTF8 offered)
and writes every accepted message to DIR as two files:

    NNNNNNNNNN-<uuid>.json   {"mail_from": "...", "rcpt_tos": ["...", ...]}
    NNNNNNNNNN-<uuid>.eml    the DATA bytes exactly as received

Sorting the names gives arrival order, also across restarts on the same DIR
(the counter goes on from the highest name already there). Both files are
written under a temporary name and renamed into place, the sidecar first, so
a reader that lists `*.eml` never sees a partial message or a missing
envelope. The reply to DATA is sent only once both are in place.

Prints "ready" on stdout once listening. Exits 0 on SIGTERM or SIGINT, 3 if
the port is taken, and, with --exit-on-stdin-eof, when its standard input
closes (the test process that started it has gone, however it went).
Needs aiosmtpd: `ops/smtp.sh ensure` prints a Python that has it.
"""

import argparse
import asyncio
import errno
import json
import os
import signal
import sys
import threading
import uuid

from aiosmtpd.smtp import SMTP

EXIT_ADDRESS_IN_USE = 3


class Store:
    def __init__(self, directory):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.counter = 0
        for name in os.listdir(directory):
            head = name.split("-", 1)[0]
            if name.endswith(".eml") and head.isdigit():
                self.counter = max(self.counter, int(head))

    def _write(self, name, data):
        final = os.path.join(self.directory, name)
        temp = final + ".tmp"
        with open(temp, "wb") as f:
            f.write(data)
        os.replace(temp, final)

    def save(self, mail_from, rcpt_tos, raw):
        # Synchronous on purpose: no other coroutine runs between taking the
        # number and the rename, so numbers follow the order of acceptance.
        self.counter += 1
        stem = "%010d-%s" % (self.counter, uuid.uuid4().hex)
        envelope = {"mail_from": mail_from, "rcpt_tos": list(rcpt_tos)}
        self._write(stem + ".json", json.dumps(envelope).encode("utf-8"))
        self._write(stem + ".eml", raw)
        return stem


class Handler:
    def __init__(self, store):
        self.store = store

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content
        if raw is None:  # aiosmtpd < 1.4 had no original_content
            raw = envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        self.store.save(envelope.mail_from or "", envelope.rcpt_tos, raw)
        return "250 OK: message accepted"


async def serve(port, directory, exit_on_stdin_eof):
    loop = asyncio.get_running_loop()
    handler = Handler(Store(directory))
    done = asyncio.Event()

    def factory():
        return SMTP(
            handler,
            hostname="opsledger-smtp-sink",
            decode_data=False,
            enable_SMTPUTF8=True,
        )

    try:
        server = await loop.create_server(factory, host="127.0.0.1", port=port)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            print("smtp-sink: 127.0.0.1:%d is in use" % port, file=sys.stderr, flush=True)
            return EXIT_ADDRESS_IN_USE
        raise

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    if exit_on_stdin_eof:

        def watch_stdin():
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            finally:
                loop.call_soon_threadsafe(done.set)

        threading.Thread(target=watch_stdin, daemon=True).start()

    print("ready", flush=True)
    await done.wait()
    # No wait_closed(): since 3.12 it also waits for open client connections.
    server.close()
    return 0


def main():
    parser = argparse.ArgumentParser(description="SMTP sink for the tests")
    parser.add_argument("port", type=int)
    parser.add_argument("directory")
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    args = parser.parse_args()
    code = asyncio.run(serve(args.port, args.directory, args.exit_on_stdin_eof))
    sys.exit(code)


if __name__ == "__main__":
    main()
