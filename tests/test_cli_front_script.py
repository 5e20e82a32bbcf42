"""scripts/check_cli_front.py (issue 32): every --help and the README's cheap commands, outside a terminal,
exit as they should, with no traceback and no Python repr. The quick form runs here, so it runs in CI."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("check_cli_front", ROOT / "scripts" / "check_cli_front.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_help_page_and_the_readmes_quick_commands_pass(capsys):
    assert _script().main(["--quick"]) == 0, capsys.readouterr().out
    assert capsys.readouterr().out.strip().endswith(" problems")


def test_it_fails_on_a_bad_exit_a_many_line_refusal_and_a_repr(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("```bash\n"
                      "bench tasks --bogus                  # argparse: usage plus error, exit 2\n"
                      "bench leaderboard --task xray-heart  # no store here: one line, exit 2 (passes)\n"
                      "```\n")
    module = _script()
    assert module.main(["--no-help", "--readme", str(readme)]) == 1
    out = capsys.readouterr().out
    assert "bench tasks --bogus: exit 2" in out and "leaderboard" not in out.split("commands checked")[0]
    assert module.REPR.search("problems: ['a']") and module.REPR.search("got KeyError('training')")
    assert module.REPR.search("format: None") and not module.REPR.search("problems: none")
