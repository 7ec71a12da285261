"""Checks every RPC of concur's four services from Python, against what the contracts promise.

It calls each RPC, checks its answers, and checks that a bad request is refused with
INVALID_ARGUMENT and a google.rpc.BadRequest naming the field at fault, read from the
grpc-status-details-bin trailer. It says what it checked, and at the first answer that is
not what concur promises it says what it got and what it wanted, and exits 1. Run it against
a concurd of its own: the checks expect no other client.

    python3 check.py [--addr HOST:PORT] [--page STATUS:SIZE:URL]...

Each --page is a URL that the sitesize may fetch, with the HTTP status and body size it must
report; without one, Measure is checked only with a bad request.
"""

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import concurd  # before grpc: it says what to install when grpc or the stubs are missing
import grpc
from concurd import (TIMEOUT, caser_pb2, caser_pb2_grpc, counter_pb2, counter_pb2_grpc,
                     error_details_pb2, printer_pb2, printer_pb2_grpc, sitesize_pb2,
                     sitesize_pb2_grpc, status_pb2)


class Mismatch(Exception):
    """An answer that is not what concur promises."""


class Page(NamedTuple):
    url: str
    status: int
    size: int


def expect(what: str, got: Any, want: Any) -> None:
    if got != want:
        raise Mismatch(f"{what}: got {got!r}, want {want!r}")


def refused(what: str, call: Callable[[], object], field: str) -> None:
    """Checks that call fails with INVALID_ARGUMENT and a BadRequest naming only field."""
    try:
        call()
    except grpc.RpcError as err:
        expect(f"{what}: code", err.code(), grpc.StatusCode.INVALID_ARGUMENT)
        expect(f"{what}: fields at fault", bad_request_fields(err), [field])
        print(f"  {what}: INVALID_ARGUMENT, its BadRequest names {field}")
        return
    raise Mismatch(f"{what}: answered, want INVALID_ARGUMENT")


def bad_request_fields(err: grpc.RpcError) -> list[str]:
    """The fields of the google.rpc.BadRequest that err's google.rpc.Status carries."""
    trailer = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    if trailer is None:
        raise Mismatch(f"{err.details()}: no grpc-status-details-bin trailer")
    status = status_pb2.Status.FromString(trailer)
    expect("google.rpc.Status: code", status.code, err.code().value[0])
    bad = error_details_pb2.BadRequest()
    if not any(detail.Unpack(bad) for detail in status.details):
        raise Mismatch(f"{err.details()}: no google.rpc.BadRequest among the details")
    return [v.field for v in bad.field_violations]


def check_counter(channel: grpc.Channel) -> list[str]:
    """Checks the counter's RPCs and returns the print jobs' lines they made, in order."""
    print("counter")
    counter = counter_pb2_grpc.CounterServiceStub(channel)
    name, other = "python", "python-stream"

    def get(of: str) -> int:
        return counter.Get(counter_pb2.GetRequest(name=of), timeout=TIMEOUT).value

    def increment(**fields: Any) -> counter_pb2.IncrementResponse:
        request = counter_pb2.IncrementRequest(name=name, **fields)
        return counter.Increment(request, timeout=TIMEOUT)

    before, other_before = get(name), get(other)
    five = increment(delta=5)
    expect("Increment {delta: 5}", (five.name, five.value), (name, before + 5))
    one = increment()
    expect("Increment without delta: value", one.value, before + 6)
    expect("Increment: a later sequence", one.sequence > five.sequence, True)
    request_id = f"check-{os.getpid()}-{time.time_ns()}"
    first = increment(delta=2, request_id=request_id)
    again = increment(delta=2, request_id=request_id)
    expect("Increment with a request_id, twice: replayed",
           (first.replayed, again.replayed), (False, True))
    expect("Increment with a request_id, twice: value", (first.value, again.value),
           (before + 8, before + 8))
    print(f"  Increment: {name} from {before} to {before + 8}, a retry with its request_id "
          "replayed")

    batches = [[(name, None), (other, 3)], [(name, None)]]
    requests = (counter_pb2.IncrementStreamRequest(increments=[
        counter_pb2.CounterIncrement(name=n, delta=d) for n, d in batch]) for batch in batches)
    summary = counter.IncrementStream(requests, timeout=TIMEOUT)
    expect("IncrementStream: applied", summary.applied, 3)
    expect("IncrementStream: counters", [(c.name, c.value) for c in summary.counters],
           [(name, before + 10), (other, other_before + 3)])
    print(f"  IncrementStream: 3 increments in 2 messages, {name} at {before + 10}")

    watch = counter.Watch(counter_pb2.WatchRequest(name=name), timeout=TIMEOUT)
    try:
        expect("Watch: the current value first", next(watch).value, before + 10)
        increment(delta=-4)
        expect("Watch: the new value", next(watch).value, before + 6)
    finally:
        watch.cancel()
    expect("Get", get(name), before + 6)
    print(f"  Watch: {before + 10}, then {before + 6} after an Increment of -4; Get agrees")

    joined = counter.Join(counter_pb2.JoinRequest(), timeout=TIMEOUT)
    expect("counter Join: printed", joined.printed, True)
    print(f"  Join: every increment printed, up to sequence {joined.sequence}")
    refused("Increment {delta: 0}", lambda: increment(delta=0), "delta")
    values = [before + n for n in (5, 6, 8, 9, 10, 6)]
    return [f"The count of {name} is {v}" for v in values]


def check_printer(channel: grpc.Channel, counter_lines: list[str]) -> None:
    print("printer")
    printer = printer_pb2_grpc.PrinterServiceStub(channel)
    source = f"python-{os.getpid()}-{time.time_ns()}"
    lines = ["Hello from Python", f"through the stubs of api/, as {source}"]

    printed = printer.Print(printer_pb2.PrintRequest(lines=lines, source=source,
                                                     source_sequence=1), timeout=TIMEOUT)
    expect("Print: duplicate", printed.duplicate, False)
    resent = printer.Print(printer_pb2.PrintRequest(lines=lines, source=source,
                                                    source_sequence=1), timeout=TIMEOUT)
    expect("Print of the same source_sequence again: (duplicate, has a sequence)",
           (resent.duplicate, resent.HasField("sequence")), (True, False))
    print(f"  Print: job {printed.sequence}, and again as a duplicate")

    jobs = [printer_pb2.PrintJob(lines=[f"PrintStream job {n} from {source}"], source=source,
                                 source_sequence=n) for n in (2, 3)]
    answers = list(printer.PrintStream(iter([printer_pb2.PrintStreamRequest(jobs=jobs)]),
                                       timeout=TIMEOUT))
    expect("PrintStream: one response per request", len(answers), 1)
    receipts = answers[0].receipts
    expect("PrintStream: receipts (source, source_sequence, duplicate)",
           [(r.source, r.source_sequence, r.duplicate) for r in receipts],
           [(source, 2, False), (source, 3, False)])
    expect("PrintStream: receipts in order", receipts[0].sequence < receipts[1].sequence, True)
    print(f"  PrintStream: 2 jobs in one message, written as {receipts[0].sequence} and "
          f"{receipts[1].sequence}")

    joined = printer.Join(printer_pb2.JoinRequest(), timeout=TIMEOUT)
    expect("printer Join: covers the PrintStream", joined.sequence >= receipts[1].sequence, True)
    print(f"  Join: written up to job {joined.sequence}")

    # What was written, read back: our jobs at their sequences, and the counter's updates,
    # which it forwarded to the printer in order.
    written = list(printer.Tail(printer_pb2.TailRequest(from_sequence=0, history_only=True),
                                timeout=TIMEOUT))
    ours = [(j.sequence, list(j.lines)) for j in written if source in j.lines[-1]]
    expect("Tail: our jobs", ours, [(printed.sequence, lines),
                                    (receipts[0].sequence, list(jobs[0].lines)),
                                    (receipts[1].sequence, list(jobs[1].lines))])
    counted = [line for j in written for line in j.lines if line in counter_lines]
    expect("Tail: the counter's updates, in order", counted[-len(counter_lines):], counter_lines)
    print(f"  Tail: {len(written)} jobs read back, ours and the counter's updates in order")
    refused("Print of a job with a source and no source_sequence",
            lambda: printer.Print(printer_pb2.PrintRequest(lines=lines, source=source),
                                  timeout=TIMEOUT),
            "source_sequence")


def check_sitesize(channel: grpc.Channel, pages: list[Page]) -> None:
    print("sitesize")
    sitesize = sitesize_pb2_grpc.SiteSizeServiceStub(channel)

    def measure(urls: list[str], ordered: bool = False) -> list[sitesize_pb2.MeasureResponse]:
        request = sitesize_pb2.MeasureRequest(urls=urls, ordered=ordered)
        return list(sitesize.Measure(request, timeout=TIMEOUT))

    if pages:
        urls = [p.url for p in pages]
        results = measure(urls)
        expect("Measure: one result per URL, by index", sorted(r.index for r in results),
               list(range(len(pages))))
        for r in results:
            want = pages[r.index]
            expect(f"Measure result {r.index} (url, status, size, truncated, error)",
                   (r.url, r.status, r.size, r.truncated, r.HasField("error")),
                   (want.url, want.status, want.size, False, False))
        ordered = measure(urls, ordered=True)
        expect("Measure, ordered: indexes", [r.index for r in ordered], list(range(len(pages))))
        print(f"  Measure: {len(pages)} URLs at their status and size, as they finish and in "
              "order")
    else:
        print("  Measure: no --page given, only a bad request checked")
    refused("Measure of an ftp URL after a good one",
            lambda: measure(["http://127.0.0.1/", "ftp://127.0.0.1/"]), "urls[1]")


def check_caser(channel: grpc.Channel) -> None:
    print("caser")
    caser = caser_pb2_grpc.CaserServiceStub(channel)
    upper, title = caser_pb2.MODE_UPPER, caser_pb2.MODE_TITLE

    for text, mode, want in [("straße", caser_pb2.MODE_UNSPECIFIED, ("STRASSE", upper)),
                             ("they're bill's", title, ("They'Re Bill'S", title))]:
        cased = caser.Case(caser_pb2.CaseRequest(text=text, mode=mode), timeout=TIMEOUT)
        expect(f"Case {text!r} in {caser_pb2.Mode.Name(mode)}", (cased.text, cased.mode), want)
    print("  Case: upper by default, and title, as Python cases")

    lines = ["hello", "straße", "title", "hello world", "quit"]
    session = caser.Session(iter(caser_pb2.SessionRequest(line=line) for line in lines),
                            timeout=TIMEOUT)
    # An announcement may come at any time; the rest answer the lines in order.
    got = [r for r in session if not r.HasField("announcement")]
    expect("Session replies", got, [
        caser_pb2.SessionResponse(welcome=caser_pb2.Welcome(
            mode=upper, text="<welcome: starting in upper case mode>")),
        caser_pb2.SessionResponse(cased=caser_pb2.Cased(line="hello", text="HELLO", mode=upper)),
        caser_pb2.SessionResponse(cased=caser_pb2.Cased(
            line="straße", text="STRASSE", mode=upper)),
        caser_pb2.SessionResponse(mode_changed=caser_pb2.ModeChanged(
            mode=title, text="<switching to title case mode>")),
        caser_pb2.SessionResponse(cased=caser_pb2.Cased(
            line="hello world", text="Hello World", mode=title)),
        caser_pb2.SessionResponse(goodbye=caser_pb2.Goodbye(
            reason=caser_pb2.GOODBYE_REASON_QUIT, text="<goodbye: you said quit>")),
    ])
    print("  Session: cased its lines, switched to title case and said goodbye to quit")


def page(arg: str) -> Page:
    """A --page: STATUS:SIZE:URL."""
    status, size, url = arg.split(":", 2)
    return Page(url, int(status), int(size))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    concurd.add_addr_flag(parser)
    parser.add_argument("--page", type=page, action="append", default=[],
                        metavar="STATUS:SIZE:URL",
                        help="a URL for Measure, with the status and size it must report")
    args = parser.parse_args()

    with concurd.connect(args.addr) as channel:
        try:
            check_printer(channel, check_counter(channel))
            check_sitesize(channel, args.page)
            check_caser(channel)
        except Mismatch as err:
            print(f"MISMATCH: {err}", file=sys.stderr)
            return 1
        except grpc.RpcError as err:
            print(f"{concurd.PROG}: {err.code().name}: {err.details()}", file=sys.stderr)
            return 1
    print(f"all checks passed against {args.addr}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
