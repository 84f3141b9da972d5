"""The driver engine with no sockets: actions in, steps out, reports back (see drivers.engine)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from ipcnet.drivers.engine import Engine, Region, run_job
from ipcnet.protocols.base import (
    CLOSE,
    SHUTDOWN_WRITE,
    Actions,
    BaseSession,
    Outcome,
    Run,
    SendFile,
    Timer,
)


class Scripted(BaseSession):
    """A session that answers each call with the next scripted actions and records calls."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        self.calls: list[tuple[str, Any]] = []

    def _next(self, name: str, arg: Any = None) -> Actions:
        self.calls.append((name, arg))
        answer = self.answers.get(name)
        if isinstance(answer, list) and answer and isinstance(answer[0], tuple):
            return answer.pop(0)[0]  # type: ignore[no-any-return]
        return answer  # type: ignore[no-any-return]

    def feed(self, data: bytes) -> Actions:
        return self._next("feed", data)

    def feed_eof(self) -> Actions:
        return self._next("feed_eof")

    def resume(self, job: Run, outcome: Outcome) -> Actions:
        return self._next("resume", outcome)

    def on_timer(self) -> Actions:
        return self._next("on_timer")


def steps(engine: Engine) -> Iterator[Any]:
    """Perform every step at once, as a model whose writes all succeed would."""
    while (step := engine.step()) is not None:
        if isinstance(step, Region):
            yield ("sendfile", step.fd, step.offset, step.count)
            engine.sent(step.count)
            continue
        yield step
        if isinstance(step, (bytes, bytearray, memoryview)):
            engine.sent(len(step))
        elif isinstance(step, Run):
            out = engine.resumed(step, run_job(step))
            if out is not None:
                yield out
                if isinstance(out, Run):
                    engine.resumed(out, run_job(out))


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def fd() -> Iterator[int]:
    with tempfile.TemporaryFile() as f:
        f.write(b"x" * 100)
        f.flush()
        number = os.dup(f.fileno())
        yield number
        if is_open(number):
            os.close(number)


def test_the_hot_path_returns_one_answer_to_write_now() -> None:
    engine = Engine(Scripted(feed=b"pong"))
    assert engine.feed(b"ping") == b"pong"
    assert engine.step() is None
    assert (engine.bytes_in, engine.bytes_out) == (4, 4)
    assert engine.reading and engine.idle


def test_counts_give_the_bytes_new_since_the_last_call_and_fed_stays_true() -> None:
    engine = Engine(Scripted(feed=b"pong"))
    assert not engine.fed and engine.counts() == (0, 0)
    engine.feed(b"ping")
    engine.feed(b"ping")
    assert engine.counts() == (8, 8)
    assert engine.counts() == (0, 0)
    assert engine.fed  # the counters were taken: the connection was still fed
    engine.feed(b"!")
    assert engine.counts() == (1, 4)


def test_a_short_write_is_requeued_first() -> None:
    engine = Engine(Scripted(feed=b"abcdef"))
    out = engine.feed(b"x")
    assert out == b"abcdef"
    engine.requeue(memoryview(out)[2:])  # the kernel took 2
    assert bytes(engine.step()) == b"cdef"  # type: ignore[arg-type]
    assert engine.step() is None  # in flight until reported
    engine.sent(1)
    assert bytes(engine.step()) == b"def"  # type: ignore[arg-type]
    engine.sent(3)
    assert engine.step() is None and engine.idle
    assert engine.bytes_out == 6


def test_a_last_answer_comes_back_at_once_with_its_close_queued() -> None:
    engine = Engine(Scripted(feed=[b"bye", CLOSE]), last_answers=True)
    assert engine.feed(b"x") == b"bye"
    assert (engine.bytes_out, engine.reading, engine.idle) == (3, False, False)
    assert engine.step() is CLOSE
    assert engine.step() is None


def test_a_short_last_answer_is_requeued_before_its_close() -> None:
    engine = Engine(Scripted(feed=[b"abcdef", CLOSE]), last_answers=True)
    out = engine.feed(b"x")
    assert out == b"abcdef"
    engine.requeue(memoryview(out)[4:])  # the kernel took 4
    assert engine.writing
    assert bytes(engine.step()) == b"ef"  # type: ignore[arg-type]
    engine.sent(2)
    assert engine.step() is CLOSE
    assert engine.bytes_out == 6


@pytest.mark.parametrize(
    ("answer", "written", "after"),
    [
        ([Timer(None), b"hi"], b"hi", [Timer(None)]),  # HTTP's first head: its deadline off
        ([Timer(None), b"bye", CLOSE], b"bye", [Timer(None), CLOSE]),
        ([Timer(None), b"a", b"b"], None, [Timer(None), b"a", b"b"]),  # not an answer: queued
        ([], None, []),  # nothing to say (a session may answer with an empty list)
        ([Timer(5)], None, [Timer(5)]),
    ],
)
def test_an_answer_after_a_leading_timer_comes_back_at_once(
    answer: list[Any], written: bytes | None, after: list[Any]
) -> None:
    """The Timer is queued, performed after the write; anything else keeps the queue."""
    engine = Engine(Scripted(feed=answer), last_answers=True)
    assert engine.feed(b"x") == written
    assert list(steps(engine)) == after


def test_without_last_answers_a_last_answer_is_queued() -> None:
    engine = Engine(Scripted(feed=[b"bye", CLOSE]))  # the blocking models' engine
    assert engine.feed(b"x") is None
    assert list(steps(engine)) == [b"bye", CLOSE]


def test_a_last_answer_after_queued_output_keeps_the_order() -> None:
    engine = Engine(Scripted(feed=[b"bye", CLOSE]), last_answers=True)
    engine.push(b"earlier")
    assert engine.feed(b"x") is None
    assert list(steps(engine)) == [b"earlier", b"bye", CLOSE]


def test_steps_come_in_order(fd: int) -> None:
    session = Scripted(feed=[b"head", SendFile(fd, 10, 50, "f", close=True), SHUTDOWN_WRITE])
    engine = Engine(session)
    assert engine.feed(b"GET") is None
    assert list(steps(engine)) == [b"head", ("sendfile", fd, 10, 50), SHUTDOWN_WRITE]
    assert not is_open(fd)  # released once its region was sent
    assert engine.bytes_out == 54


def test_a_partial_sendfile_goes_on_from_where_it_stopped(fd: int) -> None:
    engine = Engine(Scripted())
    engine.push(SendFile(fd, 0, 100, close=True))
    region = engine.step()
    assert isinstance(region, Region)
    engine.sent(30)
    again = engine.step()
    assert again is region and (region.offset, region.count) == (30, 70)
    assert is_open(fd)
    engine.push(b"the next answer")
    engine.sent(20, whole=True)  # the file ended early: its answer can only be cut short
    assert not is_open(fd) and engine.unsent == 0
    assert list(steps(engine)) == [CLOSE]  # closing tells the peer; nothing more is sent


def test_sendfile_descriptors_are_released_when_the_connection_ends_first(fd: int) -> None:
    second = os.dup(fd)
    engine = Engine(Scripted())
    engine.push([b"a" * 10, SendFile(fd, 0, 100, close=True), SendFile(second, 0, 5, close=True)])
    assert engine.step() == b"a" * 10  # in flight: a write, not a file
    engine.end()
    assert not is_open(fd) and not is_open(second)
    engine.end()  # twice is harmless (and closes nothing twice)
    assert engine.step() is None


def test_a_region_in_flight_at_end_is_released_when_it_reports_back(fd: int) -> None:
    engine = Engine(Scripted())
    engine.push(SendFile(fd, 0, 100, close=True))
    assert isinstance(engine.step(), Region)
    engine.end()
    assert is_open(fd)  # a sendfile may still be using it
    engine.sent(0)
    assert not is_open(fd)


def test_files_after_a_close_or_after_the_end_are_released(fd: int) -> None:
    late = os.dup(fd)
    engine = Engine(Scripted())
    engine.push([b"bye", CLOSE, SendFile(fd, 0, 1, close=True)])
    assert not is_open(fd)  # nothing after Close is done
    assert not engine.reading
    assert list(steps(engine)) == [b"bye", CLOSE]
    engine.end()
    engine.push(SendFile(late, 0, 1, close=True))
    assert not is_open(late)


def test_a_file_the_caller_keeps_is_never_closed(fd: int) -> None:
    engine = Engine(Scripted())
    engine.push(SendFile(fd, 0, 10))
    engine.end()
    assert is_open(fd)


def test_a_lone_run_is_the_hot_path_too() -> None:
    job = Run(lambda: 2)
    session = Scripted(feed=job, resume=b"two")
    engine = Engine(session)
    assert engine.feed(b"call") is job
    assert not engine.reading and engine.step() is None  # in flight
    assert engine.resumed(job, run_job(job)) == b"two"
    assert engine.reading and engine.bytes_out == 3


def test_run_pauses_reading_and_resume_answers_before_what_followed() -> None:
    job = Run(lambda: 41 + 1)
    session = Scripted(feed=[job, b"after"], resume=b"answer")
    engine = Engine(session)
    engine.feed(b"call")
    step = engine.step()
    assert step is job
    assert not engine.reading and engine.step() is None  # nothing while the job runs
    assert engine.resumed(job, run_job(job)) is None  # queued: b"after" waits
    assert session.calls[-1] == ("resume", Outcome(value=42))
    assert engine.reading
    assert list(steps(engine)) == [b"answer", b"after"]


def test_a_job_that_raises_reaches_resume_as_its_error() -> None:
    def boom() -> None:
        raise ValueError("no disk")

    job = Run(boom)
    session = Scripted(feed=job, resume=[b"500", CLOSE])
    engine = Engine(session)
    assert engine.feed(b"x") is job
    outcome = run_job(job)
    assert isinstance(outcome.error, ValueError) and outcome.value is None
    assert engine.resumed(job, outcome) is None
    assert list(steps(engine)) == [b"500", CLOSE]


def test_an_async_job_is_run_to_completion_where_nothing_awaits() -> None:
    async def job() -> str:
        await asyncio.sleep(0)
        return "done"

    assert run_job(Run(job)) == Outcome(value="done")


def test_a_job_outcome_after_the_end_still_reaches_the_session(fd: int) -> None:
    job = Run(lambda: fd)
    session = Scripted(feed=job, resume=SendFile(fd, 0, 10, close=True))
    engine = Engine(session)
    assert engine.feed(b"x") is job
    engine.end()  # the peer left while the job ran
    engine.resumed(job, run_job(job))
    assert session.calls[-1][0] == "resume"
    assert not is_open(fd)  # what the job opened was handed back and released


def test_timer_is_handed_out_at_once_even_behind_blocked_output() -> None:
    session = Scripted(feed=[b"x" * 10, Timer(5.0)], on_timer=[b"408", CLOSE])
    engine = Engine(session)
    engine.feed(b"slow")
    assert engine.step() == Timer(5.0)  # before the queued write
    assert engine.step() == b"x" * 10
    assert engine.step() is None  # the write is in flight (the socket is full)
    engine.push(Timer(None))
    assert engine.step() == Timer(None)  # still handed out: disarm
    engine.sent(10)
    engine.timer()
    assert list(steps(engine)) == [b"408", CLOSE]


def test_backpressure_pauses_reading_above_high_water_and_resumes_below_low_water() -> None:
    engine = Engine(Scripted(feed=b"y" * 600), high_water=1000)
    out = engine.feed(b"a")
    assert out is not None
    engine.requeue(memoryview(out))  # the kernel took nothing
    assert engine.reading  # 600 <= 1000
    engine.push(b"z" * 600)
    assert not engine.reading and engine.writing  # 1200 > 1000
    engine.step()
    engine.sent(600)
    assert not engine.reading  # 600 left: above the low-water mark (250)
    engine.step()
    engine.sent(400)
    assert engine.reading  # 200 <= 250
    assert engine.unsent == 200


def test_eof_stops_reading_and_feeds_the_session() -> None:
    session = Scripted(feed_eof=[b"last", CLOSE])
    engine = Engine(session)
    engine.feed_eof()
    assert not engine.reading
    assert list(steps(engine)) == [b"last", CLOSE]


def test_empty_buffers_are_no_steps() -> None:
    engine = Engine(Scripted())
    engine.push([b"", memoryview(b""), bytearray()])
    assert engine.step() is None and engine.idle


def test_wants_says_what_a_readiness_loop_waits_for() -> None:
    read, write = 1, 4
    job = Run(lambda: None)
    engine = Engine(Scripted(feed=job, resume=b"done"), high_water=10)
    assert engine.wants(read, write) == read
    engine.push(b"x" * 20)  # above high water, and queued
    assert engine.wants(read, write) == write
    engine.step()
    engine.sent(20)
    assert engine.wants(read, write) == read
    assert engine.feed(b"call") is job
    assert engine.wants(read, write) == 0  # neither while the job runs
    assert engine.resumed(job, run_job(job)) == b"done"
    engine.end()
    assert engine.wants(read, write) == 0
