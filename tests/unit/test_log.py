"""framework.log: rank 0 says INFO on stdout, every rank WARNING on stderr, the plain message as a print gave it; a
job's lines also reach its log file, the step line (FILE_ONLY) only there."""

from framework.log import FILE_ONLY, get_logger, job_log

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


def test_a_job_log_gets_the_lines_and_the_file_only_ones(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    path = tmp_path / "train.log"
    with job_log(str(path)):
        log.info("inside")
        log.info("step 1 | loss 1.0", extra=FILE_ONLY)
    log.info("after")
    text = path.read_text()
    assert "inside" in text and "step 1 | loss 1.0" in text and "after" not in text
    assert capsys.readouterr().out == "inside\nafter\n"
