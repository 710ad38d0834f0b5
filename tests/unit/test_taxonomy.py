"""`bootlab taxonomy`: InstructLab qna.yaml leaves checked against InstructLab's schema and
the rules its tools add, every problem at its file:line and field; init, validate and diff
as a user runs them, diff against a real git repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from bootlab import taxonomy
from bootlab.errors import BootlabError
from bootlab.taxonomy import rules

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

KNOWLEDGE_PATH = Path("knowledge/computing/linux/systemd_timers/qna.yaml")
SKILL_PATH = Path("compositional_skills/writing/poetry/haiku/qna.yaml")

KNOWLEDGE = textwrap.dedent(
    """\
    version: 3
    created_by: ada-lovelace
    domain: Linux system administration
    document_outline: |
      How systemd timer units schedule services: calendar and monotonic timers,
      catching up on missed runs, and accuracy.
    seed_examples:
      - context: |
          A timer unit is a unit file whose name ends in `.timer`. When it elapses it
          starts the service unit of the same name: `backup.timer` starts
          `backup.service`. The `Unit=` setting in the `[Timer]` section names another
          unit instead.
        questions_and_answers:
          - question: What suffix does the name of a timer unit end in?
            answer: A timer unit's name ends in `.timer`.
          - question: Which service does backup.timer start by default?
            answer: It starts backup.service, the service with the same name.
          - question: How can a timer start a unit with a different name?
            answer: By naming that unit with `Unit=` in the `[Timer]` section.
      - context: |
          Realtime timers elapse at wall-clock times given with `OnCalendar=`, as
          calendar event expressions such as `Mon..Fri 09:00`. The shorthand `daily`
          means `*-*-* 00:00:00`. `systemd-analyze calendar EXPRESSION` prints when an
          expression next elapses.
        questions_and_answers:
          - question: Which setting makes a timer elapse at wall-clock times?
            answer: "`OnCalendar=`, with a calendar event expression."
          - question: What does the calendar shorthand daily stand for?
            answer: "`*-*-* 00:00:00`: every day at midnight."
          - question: How can you check when a calendar expression next elapses?
            answer: Run `systemd-analyze calendar` with the expression.
      - context: |
          Monotonic timers elapse after a time span relative to an event:
          `OnBootSec=` counts from boot, `OnStartupSec=` from the start of the service
          manager, and `OnUnitActiveSec=` from the last time the timer's unit was
          activated. Changes of the wall clock do not move them.
        questions_and_answers:
          - question: Which setting runs a service 15 minutes after boot?
            answer: "`OnBootSec=15min`."
          - question: What does OnUnitActiveSec= count from?
            answer: From the last time the unit the timer starts was activated.
          - question: Do changes of the wall clock move monotonic timers?
            answer: No, monotonic timers are not affected by wall-clock changes.
      - context: |
          With `Persistent=true`, a calendar timer stores when it last elapsed on disk.
          If the machine was off when the timer should have elapsed, the service is
          started as soon as the timer is activated again, usually at the next boot.
          The setting only applies to timers using `OnCalendar=`.
        questions_and_answers:
          - question: What does Persistent=true do for a calendar timer?
            answer: It keeps the last elapse time on disk so missed runs are caught up.
          - question: When does a missed run start with Persistent=true?
            answer: As soon as the timer is activated again, usually at the next boot.
          - question: Which timers does Persistent= apply to?
            answer: Only timers that use `OnCalendar=`.
      - context: |
          Timers are not exact: `AccuracySec=` (one minute by default) lets systemd
          group wake-ups, and `RandomizedDelaySec=` adds a random delay so that many
          machines do not start the same job at once. `systemctl list-timers` shows
          each timer with its next and last elapse.
        questions_and_answers:
          - question: What is the default accuracy of a timer?
            answer: One minute, set with `AccuracySec=`.
          - question: Why would you set RandomizedDelaySec=?
            answer: To spread the same job over time when many machines run it.
          - question: Which command lists timers with their next elapse?
            answer: "`systemctl list-timers`."
    document:
      repo: https://github.com/example-org/linux-admin-notes.git
      commit: 5d41402abc4b2a76b9719d911017c592f8a2b3c1
      patterns:
        - systemd/timers.md
    """
)

SKILL = textwrap.dedent(
    """\
    version: 2
    created_by: basho-fan
    task_description: Write a haiku (three lines of 5, 7 and 5 syllables) on a subject.
    seed_examples:
      - question: Write a haiku about a server room at night.
        answer: |
          Fans hum in the dark
          green lights blink their quiet code
          the racks dream of load
      - question: Write a haiku about the first snow.
        answer: |
          White on the cold roof
          the city holds its breath now
          footprints start again
      - question: Write a haiku about a failed deployment.
        answer: |
          Red bar on the screen
          the rollback sighs through the night
          coffee turns to dawn
      - question: Write a haiku about autumn rain.
        answer: |
          Rain taps the window
          maple leaves float down the street
          umbrellas bloom red
      - question: Write a haiku about a cat asleep in the sun.
        answer: |
          Curled in warm sunlight
          the cat ignores the whole world
          one ear still listens
    """
)


def write(root: Path, relative: Path, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the `occurrence`th line containing `needle`."""
    found = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return found[occurrence - 1]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write(tmp_path, KNOWLEDGE_PATH, KNOWLEDGE)
    write(tmp_path, SKILL_PATH, SKILL)
    return tmp_path


def rendered(root: Path) -> list[str]:
    return [problem.render() for problem in taxonomy.check(root).problems]


def broken_knowledge(root: Path, text: str) -> tuple[Path, list[str]]:
    path = write(root, KNOWLEDGE_PATH, text)
    return path, rendered(root)


# Valid leaves ---------------------------------------------------------------------------------


def test_realistic_leaves_validate_and_parse(tree: Path) -> None:
    report = taxonomy.check(tree)
    assert report.problems == []
    assert report.summary() == "2 leaves valid (0 errors, 0 warnings)"
    found = {leaf.kind: leaf for leaf in taxonomy.leaves(tree)}
    knowledge, skill = found["knowledge"], found["skill"]
    assert knowledge.name == "knowledge/computing/linux/systemd_timers"
    assert knowledge.path == tree / KNOWLEDGE_PATH
    assert knowledge.version == 3 and knowledge.domain == "Linux system administration"
    assert len(knowledge.seed_examples) == 5
    assert all(len(example.pairs) == 3 for example in knowledge.seed_examples)
    context, first = next(knowledge.examples())
    assert context is not None and context.startswith("A timer unit is a unit file")
    assert first.question == "What suffix does the name of a timer unit end in?"
    assert knowledge.document == taxonomy.DocumentRef(
        repo="https://github.com/example-org/linux-admin-notes.git",
        commit="5d41402abc4b2a76b9719d911017c592f8a2b3c1",
        patterns=("systemd/timers.md",),
    )
    assert skill.version == 2 and not skill.grounded and skill.document is None
    assert skill.task.startswith("Write a haiku")
    assert [len(example.pairs) for example in skill.seed_examples] == [1] * 5
    assert skill.seed_examples[0].pairs[0].answer.splitlines()[0] == "Fans hum in the dark"


def test_one_file_can_be_checked_alone(tree: Path) -> None:
    report = taxonomy.check(tree / SKILL_PATH)
    assert report.files == [tree / SKILL_PATH]
    assert [leaf.name for leaf in report.leaves] == ["compositional_skills/writing/poetry/haiku"]


def test_the_schema_comes_from_instructlab_schema() -> None:
    # The JSON schemas are InstructLab's own, as packaged (no copy kept here).
    from instructlab.schema import schema_base
    from instructlab.schema.taxonomy import DEFAULT_YAMLLINT_CONFIG

    knowledge = json.loads((schema_base() / "v3" / "knowledge.json").read_text())
    assert knowledge["properties"]["seed_examples"]["minItems"] == 5
    assert rules.YAMLLINT_CONFIG == DEFAULT_YAMLLINT_CONFIG  # lint as `ilab taxonomy diff`


# One test per kind of broken file: the exact file:line and field --------------------------------


def test_bad_yaml_names_the_line(tree: Path) -> None:
    text = KNOWLEDGE.replace(
        "answer: It starts backup.service, the service with the same name.",
        "answer: It starts: backup.service",
    )
    path, problems = broken_knowledge(tree, text)
    line = line_of(text, "answer: It starts: backup.service")
    assert problems == [f"{path}:{line}: not valid YAML: mapping values are not allowed here"]


def test_a_tab_in_the_indentation_is_named_as_such(tree: Path) -> None:
    text = KNOWLEDGE.replace("\n  - context: |\n      Realtime", "\n\t- context: |\n      Realtime")
    path, problems = broken_knowledge(tree, text)
    line = line_of(text, "\t- context")
    assert f"{path}:{line}: a tab in the indentation: YAML indents with spaces only" in problems


def test_wrong_version(tree: Path) -> None:
    path, problems = broken_knowledge(tree, KNOWLEDGE.replace("version: 3", "version: 2"))
    assert problems == [
        f"{path}:1: version: 2 is not supported: knowledge leaves are written in InstructLab's "
        "version 3 format (document_outline, document, 3 Q&A pairs a context)"
    ]
    skill = write(tree, SKILL_PATH, SKILL.replace("version: 2", "version: 4"))
    assert f"{skill}:1: version: 4 is not supported: skills are written as version 2 or 3" in (
        rendered(tree)
    )


def test_missing_field(tree: Path) -> None:
    text = KNOWLEDGE.replace("domain: Linux system administration\n", "")
    path, problems = broken_knowledge(tree, text)
    assert problems == [
        f"{path}:1: domain: missing: the subject of the document, in a few words (e.g. Astronomy)"
    ]


def test_missing_answer_inside_a_pair(tree: Path) -> None:
    text = KNOWLEDGE.replace("        answer: One minute, set with `AccuracySec=`.\n", "")
    path, problems = broken_knowledge(tree, text)
    line = line_of(text, "What is the default accuracy of a timer?")
    assert problems == [
        f"{path}:{line}: seed_examples[4].questions_and_answers[0].answer: missing: the answer "
        "to it"
    ]


def test_too_few_seed_examples(tree: Path) -> None:
    cut_from = KNOWLEDGE.index("  - context: |\n      With `Persistent=true`")
    cut_to = KNOWLEDGE.index("document:\n")
    text = KNOWLEDGE[:cut_from] + KNOWLEDGE[cut_to:]
    path, problems = broken_knowledge(tree, text)
    line = line_of(text, "seed_examples:")
    assert problems == [f"{path}:{line}: seed_examples: 3 seed examples; at least 5 are needed"]


def test_wrong_number_of_question_answer_pairs(tree: Path) -> None:
    fourth = (
        "      - question: Which section holds the timer settings?\n"
        "        answer: The `[Timer]` section.\n"
    )
    anchor = "        answer: Only timers that use `OnCalendar=`.\n"
    text = KNOWLEDGE.replace(anchor, anchor + fourth)
    two = text.replace(
        "      - question: What does the calendar shorthand daily stand for?\n"
        '        answer: "`*-*-* 00:00:00`: every day at midnight."\n',
        "",
    )
    path, problems = broken_knowledge(tree, two)
    assert problems == [
        f"{path}:{line_of(two, 'questions_and_answers:', 2)}: "
        "seed_examples[1].questions_and_answers: 2 question/answer pairs; a knowledge context "
        "takes exactly 3",
        f"{path}:{line_of(two, 'questions_and_answers:', 4)}: "
        "seed_examples[3].questions_and_answers: 4 question/answer pairs; a knowledge context "
        "takes exactly 3",
    ]


def test_duplicate_questions(tree: Path) -> None:
    # The same question again, in other case and spacing, two contexts later.
    text = KNOWLEDGE.replace(
        "question: Which setting runs a service 15 minutes after boot?",
        "question: what suffix does the name of   a timer unit end in?",
    )
    path, problems = broken_knowledge(tree, text)
    line = line_of(text, "what suffix does the name of")
    first = line_of(text, "What suffix does the name")
    assert problems == [
        f"{path}:{line}: seed_examples[2].questions_and_answers[0].question: the same question "
        f"as seed_examples[0].questions_and_answers[0].question (line {first}): ask each "
        "question once"
    ]


def test_a_grounded_skill_may_ask_one_question_of_different_contexts(tree: Path) -> None:
    examples = "".join(
        f"  - context: |\n      Sales table {n}: north {n * 10}, south {n * 7}.\n"
        "    question: Which region sold more?\n"
        f"    answer: The north, with {n * 10}.\n"
        for n in range(1, 6)
    )
    text = (
        f"version: 2\ncreated_by: me\ntask_description: Read a table.\nseed_examples:\n{examples}"
    )
    write(tree, Path("compositional_skills/tables/regions/qna.yaml"), text)
    assert rendered(tree) == []
    same = text.replace("Sales table 2: north 20, south 14.", "Sales table 1: north 10, south 7.")
    path = write(tree, Path("compositional_skills/tables/regions/qna.yaml"), same)
    problems = rendered(tree)
    assert problems == [
        f"{path}:{line_of(same, 'question:', 2)}: seed_examples[1].question: the same question "
        f"as seed_examples[0].question (line {line_of(same, 'question:', 1)}) (with the same "
        "context): ask each question once"
    ]


def test_over_long_context(tree: Path) -> None:
    long_context = "      " + ("Timers elapse. " * 140).strip() + "\n"
    text = KNOWLEDGE.replace(
        "      Realtime timers elapse at wall-clock times given with `OnCalendar=`, as\n",
        long_context,
    )
    path, problems = broken_knowledge(tree, text)
    size = len(yaml.safe_load(text)["seed_examples"][1]["context"].strip())
    line = line_of(text, "- context: |", 2)
    assert size > rules.MAX_CONTEXT_CHARS
    assert problems == [
        f"{path}:{line}: seed_examples[1].context: {size} characters, over the limit of 2000 "
        "(RHEL AI documents 500 tokens; about 4 characters a token): shorten it"
    ]


def test_over_long_answer_in_a_skill(tree: Path) -> None:
    text = SKILL.replace("one ear still listens", ("one ear still listens " * 60).strip())
    path = write(tree, SKILL_PATH, text)
    line = line_of(text, "answer: |", 5)
    [problem] = rendered(tree)
    assert problem.startswith(f"{path}:{line}: seed_examples[4].answer: ")
    assert "over the limit of 1000 (RHEL AI documents 250 tokens" in problem


def test_wrong_file_name(tree: Path) -> None:
    (tree / SKILL_PATH).rename(tree / SKILL_PATH.with_name("qna.yml"))
    assert rendered(tree) == [
        f"{tree / SKILL_PATH.with_name('qna.yml')}:1: taxonomy files are named qna.yaml: "
        "rename it (InstructLab reads no other)"
    ]


def test_unknown_key(tree: Path) -> None:
    text = KNOWLEDGE.replace("created_by: ada-lovelace\n", "created_by: ada-lovelace\nsources: x\n")
    path, problems = broken_knowledge(tree, text)
    assert problems == [f"{path}:3: sources: unknown key"]
    typo = KNOWLEDGE.replace("seed_examples:", "seed_example:")
    path, problems = broken_knowledge(tree, typo)
    line = line_of(typo, "seed_example:")
    assert problems == [
        f"{path}:1: seed_examples: missing: the examples synthetic data is generated from",
        f"{path}:{line}: seed_example: unknown key (did you mean 'seed_examples'?)",
    ]


def test_a_knowledge_key_in_a_skill_points_at_the_folder(tree: Path) -> None:
    text = SKILL.replace("created_by: basho-fan\n", "created_by: basho-fan\ndomain: Poetry\n")
    path = write(tree, SKILL_PATH, text)
    assert rendered(tree) == [
        f"{path}:3: domain: unknown key for a skill leaf (knowledge leaves have it: does the "
        "file belong under knowledge/?)"
    ]


def test_missing_document_reference(tree: Path) -> None:
    cut = KNOWLEDGE.index("document:\n")
    path, problems = broken_knowledge(tree, KNOWLEDGE[:cut])
    assert problems == [
        f"{path}:1: document: missing: the git repository, commit and file patterns of the document"
    ]
    text = KNOWLEDGE.replace("  commit: 5d41402abc4b2a76b9719d911017c592f8a2b3c1\n", "")
    path, problems = broken_knowledge(tree, text)
    assert problems == [
        f"{path}:{line_of(text, 'document:')}: document.commit: missing: the commit of the "
        "repository to read the document at"
    ]


def test_empty_and_blank_text(tree: Path) -> None:
    text = KNOWLEDGE.replace("created_by: ada-lovelace", 'created_by: ""').replace(
        "answer: A timer unit's name ends in `.timer`.", 'answer: "   "'
    )
    path, problems = broken_knowledge(tree, text)
    assert problems == [
        f"{path}:2: created_by: is empty",
        f"{path}:{line_of(text, 'answer: ' + chr(34))}: "
        "seed_examples[0].questions_and_answers[0].answer: is blank",
    ]
    text = KNOWLEDGE.replace("answer: A timer unit's name ends in `.timer`.", "answer:")
    path, problems = broken_knowledge(tree, text)
    assert problems == [
        f"{path}:{line_of(text, 'answer:')}: seed_examples[0].questions_and_answers[0].answer: "
        "must be text (it is empty)"
    ]


def test_trailing_spaces_are_linted_as_ilab_does(tree: Path) -> None:
    text = KNOWLEDGE.replace("domain: Linux system administration", "domain: Linux  ").replace(
        "patterns:", "patterns:  "
    )
    path, problems = broken_knowledge(tree, text)
    assert problems == [
        f"{path}:3: domain: trailing spaces (and 1 more lines) (yamllint trailing-spaces): ilab "
        f"refuses them too; sed -i 's/[[:space:]]*$//' {path}"
    ]


def test_warnings_do_not_invalidate(tree: Path) -> None:
    text = KNOWLEDGE.replace("commit: 5d41402abc4b2a76b9719d911017c592f8a2b3c1", "commit: main")
    path = write(tree, KNOWLEDGE_PATH, text)
    report = taxonomy.check(tree)
    assert not report.errors and len(report.leaves) == 2
    assert [p.render() for p in report.warnings] == [
        f"{path}:{line_of(text, 'commit: main')}: document.commit: 'main' is a branch, and a "
        "branch moves: use the commit's id (git rev-parse HEAD in the document's repository)"
    ]


def test_tabs_and_garbled_text_are_warned_about(tree: Path) -> None:
    text = KNOWLEDGE.replace("`Mon..Fri 09:00`", "`Mon..Fri\t09:00`").replace(
        "Changes of the wall clock", "Changes of the wall clock â€“ forward or back â€“"
    )
    path = write(tree, KNOWLEDGE_PATH, text)
    report = taxonomy.check(tree)
    assert not report.errors
    assert [p.render() for p in report.warnings] == [
        f"{path}:{line_of(text, chr(9))}: seed_examples[1].context: a tab character: YAML "
        "indents with spaces, and tabs in text come out differently in every prompt; use spaces",
        f"{path}:{line_of(text, 'â€“')}: seed_examples[2].context: 'â€' looks like UTF-8 text "
        "read as Windows-1252 (copied from a garbled page?): fix the characters",
    ]


def test_leaves_only_in_leaf_folders(tree: Path) -> None:
    outer = write(tree, Path("knowledge/computing/linux/qna.yaml"), KNOWLEDGE)
    top = write(tree, Path("compositional_skills/qna.yaml"), SKILL)
    assert rendered(tree) == [
        f"{top}:1: a leaf needs a folder of its own below compositional_skills/, named for its "
        "topic (e.g. compositional_skills/<subject>/<topic>/qna.yaml)",
        f"{outer}:1: not a leaf folder: {KNOWLEDGE_PATH} is below it; qna.yaml files go only "
        "in folders with no leaves below them",
        f"{tree / KNOWLEDGE_PATH}:1: inside the leaf folder of knowledge/computing/linux/qna.yaml:"
        " qna.yaml files go only in folders with no leaves below them",
    ]


def test_every_problem_of_every_file_in_one_run(tree: Path) -> None:
    write(tree, KNOWLEDGE_PATH, KNOWLEDGE.replace("version: 3", "version: 1"))
    write(tree, SKILL_PATH, SKILL.replace("created_by: basho-fan", "created_by:"))
    good = write(tree, Path("compositional_skills/writing/poetry/tanka/qna.yaml"), SKILL)
    report = taxonomy.check(tree)
    assert len(report.errors) == 2 and len(report.invalid_files) == 2
    assert [leaf.path for leaf in report.leaves] == [good]
    with pytest.raises(BootlabError) as raised:
        taxonomy.leaves(tree)
    assert raised.value.exit_code == 65
    assert "2 of 3 leaves invalid (2 errors, 0 warnings)" in raised.value.message
    assert f"{tree / SKILL_PATH}:2: created_by: must be text (it is empty)" in raised.value.message


# The command line -------------------------------------------------------------------------------


def bootlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "appliance")}
    return subprocess.run(
        [sys.executable, "-m", "bootlab.cli", "taxonomy", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
        timeout=60,
    )


def test_cli_init_writes_a_taxonomy_that_validates(tmp_path: Path) -> None:
    target = tmp_path / "taxonomy"
    made = bootlab("init", str(target))
    assert made.returncode == 0, made.stderr
    assert (target / "README.md").is_file()
    assert (target / "knowledge/company/travel_expenses/qna.yaml").is_file()
    assert (target / "compositional_skills/extraction/meeting_action_items/qna.yaml").is_file()
    if shutil.which("git"):
        assert (target / ".git").is_dir() and "a git repository" in made.stdout
    checked = bootlab("validate", str(target))
    assert checked.returncode == 0, checked.stderr
    assert "2 leaves valid (0 errors, 1 warning)" in checked.stdout
    assert "document.commit: a placeholder" in checked.stderr  # until it names a real one
    again = bootlab("init", str(target))
    assert again.returncode == 3 and "already exists and is not an empty folder" in again.stderr
    assert "Traceback" not in again.stderr


def test_cli_validate_exit_codes(tree: Path) -> None:
    ok = bootlab("validate", str(tree))
    assert ok.returncode == 0 and "2 leaves valid" in ok.stdout
    inside = bootlab("validate", cwd=tree / "knowledge/computing")  # found from a subfolder
    assert inside.returncode == 0 and "2 leaves valid" in inside.stdout
    write(tree, KNOWLEDGE_PATH, KNOWLEDGE.replace("version: 3", "version: 2"))
    bad = bootlab("validate", str(tree))
    assert bad.returncode == 65 and "Traceback" not in bad.stderr
    assert f"error: {tree / KNOWLEDGE_PATH}:1: version: 2 is not supported" in bad.stderr
    assert "error: 1 of 2 leaves invalid (1 error, 0 warnings)" in bad.stderr
    as_json = bootlab("validate", "--json", str(tree))
    document = json.loads(as_json.stdout)
    assert as_json.returncode == 65 and document["errors"][0]["field"] == "version"
    assert [leaf["kind"] for leaf in document["leaves"]] == ["skill"]
    missing = bootlab("validate", str(tree / "nowhere"))
    assert missing.returncode == 6 and "no such file or directory" in missing.stderr


def test_cli_shows_twenty_errors_and_counts_the_rest(tree: Path) -> None:
    for n in range(25):
        write(tree, Path(f"compositional_skills/bad/leaf{n:02}/qna.yaml"), "version: 2\n")
    result = bootlab("validate", str(tree))
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 65 and len(errors) == 20 + 1  # and the summary
    assert "... and 55 more errors (--all shows them)" in result.stderr
    everything = bootlab("validate", "--all", str(tree))
    assert len([x for x in everything.stderr.splitlines() if x.startswith("error: ")]) == 76


def git(root: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    done = subprocess.run(
        ["git", *args], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def listed(result: subprocess.CompletedProcess[str]) -> set[tuple[str, str]]:
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("  ")]
    return {(row[0], row[1]) for row in rows}


@needs_git
def test_cli_diff_against_a_real_repository(tree: Path) -> None:
    git(tree, "init", "--quiet")
    git(tree, "symbolic-ref", "HEAD", "refs/heads/main")
    (tree / "README.md").write_text("notes\n")
    git(tree, "add", ".")
    git(tree, "commit", "--quiet", "-m", "taxonomy")
    nothing = bootlab("diff", str(tree))
    assert nothing.returncode == 0 and "no new or changed leaves against main" in nothing.stdout

    # On a branch: a changed leaf, an added (staged) one, an untracked one; a README and a
    # file outside the taxonomy's folders do not count.
    git(tree, "checkout", "--quiet", "-b", "more-poems")
    write(tree, SKILL_PATH, SKILL.replace("basho-fan", "issa-fan"))
    tanka = write(tree, Path("compositional_skills/writing/poetry/tanka/qna.yaml"), SKILL)
    git(tree, "add", str(tanka))
    git(tree, "commit", "--quiet", "-m", "tanka")
    limerick = Path("compositional_skills/writing/poetry/limerick/qna.yaml")
    write(tree, limerick, SKILL)
    (tree / "README.md").write_text("more notes\n")
    write(tree, Path("drafts/qna.yaml"), SKILL)
    result = bootlab("diff", str(tree))
    assert result.returncode == 0, result.stderr
    assert "leaves new or changed against main (" in result.stdout
    assert listed(result) == {
        ("modified", str(tree / SKILL_PATH)),
        ("added", str(tanka)),
        ("untracked", str(tree / limerick)),
    }
    assert "3 leaves valid (0 errors, 0 warnings)" in result.stdout

    # Against the branch's own HEAD only the uncommitted work counts.
    since_head = bootlab("diff", "--ref", "HEAD", str(tree))
    assert {path for _, path in listed(since_head)} == {
        str(tree / SKILL_PATH),
        str(tree / limerick),
    }

    # An invalid leaf among them: listed, reported, exit 65.
    write(tree, limerick, SKILL.replace("version: 2", "version: 9"))
    invalid = bootlab("diff", "--json", str(tree))
    document = json.loads(invalid.stdout)
    assert invalid.returncode == 65 and "Traceback" not in invalid.stderr
    assert {change["status"] for change in document["changes"]} == {
        "modified",
        "added",
        "untracked",
    }
    assert document["errors"][0]["path"] == str(tree / limerick)
    unknown = bootlab("diff", "--ref", "no-such-branch", str(tree))
    assert unknown.returncode == 2 and "'no-such-branch' is not a branch" in unknown.stderr


@needs_git
def test_cli_diff_in_a_fresh_repository_lists_everything(tmp_path: Path) -> None:
    target = tmp_path / "taxonomy"
    assert bootlab("init", str(target)).returncode == 0
    result = bootlab("diff", cwd=target)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("no commits yet: every leaf counts as new:")
    assert {status for status, _ in listed(result)} == {"untracked"}
    assert len(listed(result)) == 2


def test_cli_diff_outside_git_counts_every_leaf_as_new(tree: Path) -> None:
    result = bootlab("diff", str(tree))
    assert result.returncode == 0, result.stderr
    assert "every leaf counts as new" in result.stdout
    assert listed(result) == {
        ("added", str(tree / KNOWLEDGE_PATH)),
        ("added", str(tree / SKILL_PATH)),
    }
