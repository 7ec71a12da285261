"""Raymond Hettinger's talk "Thinking about Concurrency", in Python, through concur.

The talk's three examples, each with its resources owned by a concur service:

- threading: the talk's worker threads send increments to the counter, which sends the
  printer each count in order (RR 1000, RR 1001); the workers are joined (RR 1002), then
  the counter and the printer (RR 1003), and what the printer wrote is read back and shown;
- multi-processing: the talk's sites measured in one trip to the sitesize, each result
  shown as it comes back with its URL (pool.imap_unordered);
- async: two caser sessions side by side, one switched to title case, each answered in
  its own mode.

    python3 talk.py [--addr HOST:PORT] [--workers N] [--increments N] [--jitter SECONDS]
                    [--demo-sites-listen HOST:PORT] [URL ...]

Without URLs it serves the talk's sites itself, on --demo-sites-listen, which concurd's
sitesize must be allowed to reach: --sitesize-allow=127.0.0.1 --sitesize-allow-ports=PORT.
It exits 0 when every part came out as the talk says, 1 when one did not.
"""

import argparse
import queue
import random
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

import concurd  # before grpc: it says what to install when grpc or the stubs are missing
import grpc
from concurd import (TIMEOUT, caser_pb2, caser_pb2_grpc, counter_pb2, counter_pb2_grpc,
                     printer_pb2, printer_pb2_grpc, sitesize_pb2, sitesize_pb2_grpc)

RULE = "---------------"

# The talk's Pool(10).
POOL_SIZE = 10

# Width of user A's column in the async part.
COLUMN = 44


class Failure(Exception):
    """A part of the talk that did not come out as the talk says."""


def heading(title: str) -> None:
    print(f"\n{title}\n{'=' * min(len(title), 78)}")


# Threading ##################################################################################

class Worker(threading.Thread):
    """The talk's worker: "My job is to increment the counter and print the current count".

    It only sends increments; the counter prints each count. What it heard back, or the
    error that stopped it, is its own: no other thread touches them.
    """

    def __init__(self, counter: counter_pb2_grpc.CounterServiceStub, increments: int,
                 jitter: float) -> None:
        super().__init__()
        self.counter, self.increments, self.jitter = counter, increments, jitter
        self.counts: list[int] = []
        self.error: grpc.RpcError | None = None

    def run(self) -> None:
        try:
            for _ in range(self.increments):
                time.sleep(random.random() * self.jitter)  # the talk's fuzz()
                reply = self.counter.Increment(counter_pb2.IncrementRequest(), timeout=TIMEOUT)
                self.counts.append(reply.value)
        except grpc.RpcError as err:
            self.error = err


def talk_jobs(first: int, last: int) -> list[list[str]]:
    """The print jobs of the talk's right way, for the counts first to last."""
    counts = [[f"The count is {n}", RULE] for n in range(first, last + 1)]
    return [["Starting up"], *counts, ["Finishing up"]]


def threading_part(channel: grpc.Channel, workers: int, increments: int,
                   jitter: float) -> None:
    heading(f"Threading: {workers} worker threads, the counter and the printer")
    print("Each resource has one owner and everyone sends it messages (RR 1000); the counter "
          "sends each\ncount to the printer itself, in order (RR 1001); Join waits for what "
          "was sent (RR 1003).\n")
    counter = counter_pb2_grpc.CounterServiceStub(channel)
    printer = printer_pb2_grpc.PrinterServiceStub(channel)
    before = counter.Get(counter_pb2.GetRequest(), timeout=TIMEOUT).value
    start = printer.Print(printer_pb2.PrintRequest(lines=["Starting up"]), timeout=TIMEOUT)

    threads = [Worker(counter, increments, jitter) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for t in threads:
        if t.error is not None:
            raise t.error
    joined = counter.Join(counter_pb2.JoinRequest(), timeout=TIMEOUT)
    if not joined.printed:
        raise Failure("the counter runs without a printer (its Join says printed: false): "
                      "start its concurd with the printer, or with --printer-addr")
    finish = printer.Print(printer_pb2.PrintRequest(lines=["Finishing up"]), timeout=TIMEOUT)
    printer.Join(printer_pb2.JoinRequest(), timeout=TIMEOUT)

    jobs = tail(printer, start.sequence, finish.sequence)
    print(f"The printer wrote, read back with Tail (its jobs {start.sequence} to "
          f"{finish.sequence}):")
    for job in jobs:
        print(*job, sep="\n")
    value = counter.Get(counter_pb2.GetRequest(), timeout=TIMEOUT).value
    total = workers * increments
    print(f"\nThe counter reads {value} after {total} increments from {before}.")

    first, last = before + 1, before + total
    if sorted(c for t in threads for c in t.counts) != list(range(first, last + 1)):
        raise Failure(f"the Increments did not answer each count from {first} to {last} once")
    if jobs != talk_jobs(first, last):
        raise Failure(f"the printer's jobs {start.sequence} to {finish.sequence} are not the "
                      "talk's output (did another client print, or the counter forward to "
                      "another printer?)")
    print(f"Check passed: the counter counted {first} to {last}, each once, and the printer "
          "wrote exactly the talk's output, in order.")


def tail(printer: printer_pb2_grpc.PrinterServiceStub, first: int,
         last: int) -> list[list[str]]:
    """The lines of the jobs the printer wrote from sequence first to last."""
    stream = printer.Tail(printer_pb2.TailRequest(from_sequence=first, history_only=True),
                          timeout=TIMEOUT)
    jobs = []
    try:
        for job in stream:
            jobs.append(list(job.lines))
            if job.sequence >= last:
                return jobs
    finally:
        stream.cancel()
    raise Failure(f"the printer's Tail ended before job {last}, the Finishing up this run "
                  "printed")


# Multi-processing ###########################################################################

class Site(NamedTuple):
    host: str
    size: int
    delay: float  # seconds, like a real site's


# The talk's sites, with the sizes its imap_unordered run printed (internal/demosites).
SITES = [
    Site("www.yahoo.com", 439968, 0.24),
    Site("www.cnn.com", 1133779, 0.30),
    Site("www.python.org", 49694, 0.12),
    Site("www.jython.org", 10286, 0.08),
    Site("www.pypy.org", 5539, 0.06),
    Site("www.perl.org", 12397, 0.09),
    Site("www.cisco.com", 93949, 0.15),
    Site("www.facebook.com", 127925, 0.20),
    Site("www.twitter.com", 385266, 0.22),
    Site("arstechnica.com", 76194, 0.13),
    Site("www.reuters.com", 182219, 0.18),
    Site("abcnews.go.com", 199946, 0.17),
    Site("www.cnbc.com", 1679107, 0.28),
    Site("www.cnbc.com", 1679107, 0.28),
]


class DemoPage(BaseHTTPRequestHandler):
    """Serves /HOST/ with the size the talk measured for HOST, after the site's delay."""

    pages = {f"/{site.host}/": site for site in SITES}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        site = self.pages.get(self.path)
        if site is None:
            self.send_error(404)
            return
        time.sleep(site.delay)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(site.size))
        self.end_headers()
        self.wfile.write(b"x" * site.size)

    def log_message(self, format: str, *args: object) -> None:
        """Keeps quiet: the talk shows what the sitesize measured, not the requests."""


@contextmanager
def demo_sites(listen: str) -> Iterator[list[str]]:
    """Serves the talk's sites on listen (HOST:PORT, port 0 for any) and yields their URLs."""
    host, _, port = listen.rpartition(":")
    with ThreadingHTTPServer((host, int(port)), DemoPage) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            yield [f"http://{host}:{server.server_port}/{site.host}/" for site in SITES]
        finally:
            server.shutdown()
            thread.join()


def sites_part(channel: grpc.Channel, urls: list[str], sizes: list[int] | None) -> None:
    """Measures urls in one trip; with sizes, the demo sites', checks every size."""
    heading(f"Multi-processing: the sizes of {len(urls)} sites")
    print(f"One trip to the sitesize with the whole list, {POOL_SIZE} at a time; results as "
          "they complete (pool.imap_unordered):")
    sitesize = sitesize_pb2_grpc.SiteSizeServiceStub(channel)
    request = sitesize_pb2.MeasureRequest(urls=urls, concurrency=POOL_SIZE)
    measured: dict[int, int] = {}
    for r in sitesize.Measure(request, timeout=TIMEOUT):
        if r.HasField("error"):
            code = sitesize_pb2.FetchErrorCode.Name(r.error.code)
            print((r.url, f"{code}: {r.error.message}"))
        else:
            print((r.url, r.size))
            measured[r.index] = r.size
    if sizes is None:
        return
    if measured != dict(enumerate(sizes)):
        raise Failure("the sitesize did not measure every demo site at its size; a concurd "
                      "that refuses them needs --sitesize-allow=127.0.0.1 and "
                      "--sitesize-allow-ports set to the port of --demo-sites-listen")
    print("Check passed: every demo site measured at the size the talk printed.")


# Async ######################################################################################

UPPER, TITLE = caser_pb2.MODE_UPPER, caser_pb2.MODE_TITLE

# The talk's two users: A switches to title case, B stays in upper case. Each step is a user
# (0 for A), a line, and the cased text that must come back ("" for a switch) in which mode.
SCRIPT = [
    (0, "hello", "HELLO", UPPER),
    (1, "hello", "HELLO", UPPER),
    (0, "title", "", TITLE),
    (0, "hello world", "Hello World", TITLE),
    (1, "hello world", "HELLO WORLD", UPPER),
    (0, "thinking about concurrency", "Thinking About Concurrency", TITLE),
    (1, "thinking about concurrency", "THINKING ABOUT CONCURRENCY", UPPER),
]


def render(reply: caser_pb2.SessionResponse) -> str:
    """A message as the talk's telnet session shows it."""
    kind = reply.WhichOneof("reply")
    if kind == "cased":
        prefix = "Upper-cased" if reply.cased.mode == UPPER else "Title-cased"
        return f"{prefix}: {reply.cased.text!r}"
    return getattr(reply, kind).text


class Session:
    """One user's caser session, shown in the user's column.

    gRPC sends the lines it reads from a queue, in a thread of its own, while this thread
    reads the replies.
    """

    def __init__(self, caser: caser_pb2_grpc.CaserServiceStub, user: int) -> None:
        self.user = user
        self.lines: queue.SimpleQueue[caser_pb2.SessionRequest | None] = queue.SimpleQueue()
        self.replies = caser.Session(iter(self.lines.get, None), timeout=TIMEOUT)

    def say(self, text: str) -> None:
        print(" " * (self.user * COLUMN) + text)

    def send(self, line: str) -> None:
        self.say("> " + line)
        self.lines.put(caser_pb2.SessionRequest(line=line))

    def receive(self) -> caser_pb2.SessionResponse:
        """The next reply that answers the user; announcements come any time, and are shown."""
        for reply in self.replies:
            self.say(render(reply))
            if not reply.HasField("announcement"):
                return reply
        raise Failure(f"user {'AB'[self.user]}'s session ended early")

    def close(self) -> None:
        self.lines.put(None)


def async_part(channel: grpc.Channel) -> None:
    heading("Async: two users of the caser side by side, each session with its own mode")
    caser = caser_pb2_grpc.CaserServiceStub(channel)
    print(f"{'user A':<{COLUMN}}user B")
    users = [Session(caser, 0), Session(caser, 1)]
    try:
        for s in users:
            if s.receive().welcome.mode != UPPER:
                raise Failure("a session did not open with a welcome in upper case mode")
        for user, line, text, mode in SCRIPT:
            users[user].send(line)
            reply = users[user].receive()
            answer = reply.cased if text else reply.mode_changed
            if answer.mode != mode or text and answer.text != text:
                raise Failure(f"user {'AB'[user]} said {line!r} and heard {render(reply)!r}: "
                              "a session did not keep its own mode")
        for s in users:
            s.send("quit")
            if s.receive().goodbye.reason != caser_pb2.GOODBYE_REASON_QUIT:
                raise Failure("a session did not say goodbye to quit")
    finally:
        for s in users:
            s.close()
    print("\nCheck passed: user A switched to title case, user B stayed in upper case, and "
          "each was answered in its own mode.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    concurd.add_addr_flag(parser)
    parser.add_argument("--workers", type=int, default=10,
                        help="worker threads, as the talk's ten (default %(default)s)")
    parser.add_argument("--increments", type=int, default=1,
                        help="increments per worker (default %(default)s, as in the talk)")
    parser.add_argument("--jitter", type=float, default=0.0, metavar="SECONDS",
                        help="the talk's fuzz(): each worker sleeps a random time up to this "
                             "before each increment (default 0, off)")
    parser.add_argument("--demo-sites-listen", default="127.0.0.1:0", metavar="HOST:PORT",
                        help="where to serve the talk's sites when no URL is given "
                             "(default %(default)s, any free port)")
    parser.add_argument("urls", nargs="*", metavar="URL",
                        help="sites to measure instead of the talk's")
    args = parser.parse_args()
    if args.workers < 1 or args.increments < 1 or args.jitter < 0:
        parser.error("--workers and --increments must be at least 1, --jitter not negative")

    with concurd.connect(args.addr) as channel:
        try:
            threading_part(channel, args.workers, args.increments, args.jitter)
            if args.urls:
                sites_part(channel, args.urls, None)
            else:
                with demo_sites(args.demo_sites_listen) as urls:
                    sites_part(channel, urls, [site.size for site in SITES])
            async_part(channel)
        except grpc.RpcError as err:
            print(f"{concurd.PROG}: {err.code().name}: {err.details()}", file=sys.stderr)
            return 1
        except Failure as err:
            print(f"{concurd.PROG}: {err}", file=sys.stderr)
            return 1
    print("\nEvery part came out as the talk says: threading, multi-processing, async.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
