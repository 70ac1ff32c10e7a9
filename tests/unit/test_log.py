"""framework.log: rank 0 says INFO on stdout, every rank WARNING on stderr, the plain message as a print gave it (the
job's train.log copies the console: tests/e2e)."""

from framework.log import get_logger

log = get_logger("framework.tests.log")


def test_rank_zero_logs_info_to_stdout_and_warnings_to_stderr(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    log.info("hello")
    log.warning("careful")
    out, err = capsys.readouterr()
    assert out == "hello\n" and err == "careful\n"


def test_other_ranks_say_only_warnings(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    log.info("hello")
    log.warning("careful")
    out, err = capsys.readouterr()
    assert out == "" and err == "careful\n"
