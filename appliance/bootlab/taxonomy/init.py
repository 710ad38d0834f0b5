"""`bootlab taxonomy init`: a starting taxonomy to edit, with one knowledge leaf and one
skill leaf that validate, and a README on the layout. A git repository when git is
installed (nothing committed: `bootlab taxonomy diff` then lists the examples as new)."""

from __future__ import annotations

import shutil
from pathlib import Path

from bootlab.errors import Exit, die
from bootlab.run import run

KNOWLEDGE_LEAF = Path("knowledge/company/travel_expenses/qna.yaml")
SKILL_LEAF = Path("compositional_skills/extraction/meeting_action_items/qna.yaml")

README = """\
# Taxonomy

The knowledge and skills to teach a model, in InstructLab's layout. Each leaf is a folder
holding one `qna.yaml`; the folders above it name its subject.

    knowledge/<subject>/<topic>/qna.yaml              facts, from documents
    compositional_skills/<group>/<skill>/qna.yaml     how to do a task

A `qna.yaml` sits only in a leaf: a folder with no other leaves below it.

## Knowledge (`version: 3`)

- `created_by`: your git user name; `domain`: the subject in a few words;
  `document_outline`: one line on what the document covers.
- `seed_examples`: at least 5, each a `context` (a passage of the document, at most about
  500 tokens: 2000 characters) and `questions_and_answers`: exactly 3 pairs, each
  question and answer at most about 250 tokens (1000 characters), every question asked once.
- `document`: the git repository holding the document (Markdown or PDF), the commit to
  read it at (`git rev-parse HEAD` there; a branch would move) and `patterns`, the files.

## Skills (`version: 2` or `3`)

- `created_by`, `task_description`: what the skill does.
- `seed_examples`: at least 5, each a `question` and an `answer`, and for a grounded skill
  a `context` the answer draws on (a table, an email, notes). Same limits as above.

## Working on it

    bootlab taxonomy validate      # every leaf: errors name file:line and the field
    bootlab taxonomy diff          # leaves new or changed against main, validated
    git add . && git commit        # what diff compares with next time

The two leaves here are examples: replace them with your own. The knowledge example's
`document` is a placeholder (validate warns about its commit) until it names a real
repository. Text is linted as `ilab taxonomy diff` lints it: no trailing spaces, a newline
at the end, spaces instead of tabs.
"""

KNOWLEDGE = """\
version: 3
created_by: bootlab
domain: Company travel policy
document_outline: |
  Example Corp's travel expense policy: booking, daily allowances, receipts and
  reimbursement deadlines.
seed_examples:
  - context: |
      ## Booking travel
      Employees book flights, trains and hotels through the company travel portal.
      Economy class is the default for flights under six hours; flights of six hours
      or more may be booked in premium economy. Bookings made outside the portal are
      reimbursed only when the portal offered no option for the same trip.
    questions_and_answers:
      - question: Where do employees book their travel?
        answer: Through the company travel portal, for flights, trains and hotels.
      - question: Which class may be booked for a seven-hour flight?
        answer: Premium economy, because the flight lasts six hours or more.
      - question: When is a booking made outside the portal reimbursed?
        answer: Only when the portal offered no option for the same trip.
  - context: |
      ## Daily allowance
      A daily allowance of 60 EUR covers meals and local transport on travel days.
      On days when a meal is provided by a conference or a customer, the allowance
      is reduced by 15 EUR for each meal provided. The allowance is paid with the
      next salary after the expense report is approved.
    questions_and_answers:
      - question: How much is the daily allowance?
        answer: 60 EUR a day, covering meals and local transport.
      - question: What happens to the allowance when a conference provides lunch?
        answer: It is reduced by 15 EUR for that provided meal.
      - question: When is the daily allowance paid?
        answer: With the next salary after the expense report is approved.
  - context: |
      ## Hotels
      Hotel stays are covered up to 150 EUR a night in most cities and up to 220 EUR
      a night in cities on the high-cost list. Breakfast included in the room rate
      does not reduce the daily allowance. Stays longer than 14 nights need the
      approval of the department head before booking.
    questions_and_answers:
      - question: What is the hotel limit in a city on the high-cost list?
        answer: Up to 220 EUR a night.
      - question: Does a breakfast included in the room rate reduce the allowance?
        answer: No, breakfast included in the room rate does not reduce it.
      - question: Who must approve a hotel stay of three weeks?
        answer: The department head, before booking, as it exceeds 14 nights.
  - context: |
      ## Receipts
      Every expense above 10 EUR needs a receipt, photographed or scanned and attached
      to the expense report. A lost receipt can be replaced by a signed statement
      describing the expense, at most twice a year. Receipts must show the date, the
      amount and the name of the seller.
    questions_and_answers:
      - question: Which expenses need a receipt?
        answer: Every expense above 10 EUR.
      - question: What can replace a lost receipt?
        answer: A signed statement describing the expense, at most twice a year.
      - question: What must a receipt show?
        answer: The date, the amount and the name of the seller.
  - context: |
      ## Reimbursement deadlines
      Expense reports are submitted within 30 days of the end of the trip. Reports
      submitted later are reimbursed only with the approval of the finance team.
      Approved expenses are reimbursed within ten working days to the employee's
      salary account.
    questions_and_answers:
      - question: How long do employees have to submit an expense report?
        answer: 30 days from the end of the trip.
      - question: What happens to a report submitted after the deadline?
        answer: It is reimbursed only if the finance team approves it.
      - question: How quickly are approved expenses reimbursed?
        answer: Within ten working days, to the employee's salary account.
document:
  # The git repository holding the document, the commit to read it at and its files.
  # Placeholders: set them to your document's repository.
  repo: https://git.example.com/example-corp/policies.git
  commit: "0000000000000000000000000000000000000000"
  patterns:
    - travel_expenses.md
"""

SKILL = """\
version: 3
created_by: bootlab
task_description: |
  Extract the action items from meeting notes as a list: each item with its owner and
  its due date when the notes give one.
seed_examples:
  - context: |
      Weekly platform sync, 3 March. Attendees: Ana, Ben, Chloe.
      Ana will upgrade the staging cluster by Friday. Ben reported the disk alerts are
      noisy; he agreed to tune the thresholds. Chloe presented the Q2 roadmap.
    question: What are the action items from this meeting?
    answer: |
      - Ana: upgrade the staging cluster (due Friday)
      - Ben: tune the disk alert thresholds
  - context: |
      Release review, 12 April. The release is postponed to 19 April because two
      tests fail on ARM. Dev will fix the ARM tests by 16 April. Priya will update the
      release notes once the date is final. No other changes.
    question: List the action items, with owners and due dates.
    answer: |
      - Dev: fix the failing ARM tests (due 16 April)
      - Priya: update the release notes once the release date is final
  - context: |
      Customer call with Northwind, 2 May. They asked for SSO support and an export of
      their audit logs. Sam will send the audit log export tomorrow. Lee will write up
      the SSO requirements and share them with the product team next week.
    question: What did we commit to after the Northwind call?
    answer: |
      - Sam: send Northwind the audit log export (due tomorrow)
      - Lee: write up the SSO requirements for the product team (due next week)
  - context: |
      Hiring sync, 20 May. Two candidates passed the technical round. Mia schedules the
      final interviews for both this week. The job ad for the data role stays online.
      Tom checks the salary bands with HR before the offers.
    question: Which tasks came out of the hiring sync?
    answer: |
      - Mia: schedule the final interviews for both candidates (due this week)
      - Tom: check the salary bands with HR before the offers
  - context: |
      Incident retrospective, 28 May. The outage lasted 40 minutes; the cause was an
      expired certificate. Omar automates certificate renewal by the end of June. Jo
      adds an expiry alert 30 days ahead. Everyone reviews the runbook before Friday.
    question: Summarise the follow-up actions from the retrospective.
    answer: |
      - Omar: automate certificate renewal (due end of June)
      - Jo: add an alert 30 days before a certificate expires
      - Everyone: review the runbook (due Friday)
"""


def init(path: Path) -> tuple[list[Path], bool]:
    """Write the starting taxonomy at `path` (absent or an empty folder). Returns the
    files written and whether it is a git repository."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise die(
            f"{path} already exists and is not an empty folder",
            hint="name a new folder: bootlab taxonomy init PATH",
            exit_code=Exit.CONFLICT,
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        written = []
        for relative, text in (
            (Path("README.md"), README),
            (KNOWLEDGE_LEAF, KNOWLEDGE),
            (SKILL_LEAF, SKILL),
        ):
            (path / relative).parent.mkdir(parents=True, exist_ok=True)
            (path / relative).write_text(text, encoding="utf-8")
            written.append(path / relative)
    except OSError as error:
        raise die(f"cannot write the taxonomy at {path}: {error.strerror}") from None
    return written, _git_init(path)


def _git_init(path: Path) -> bool:
    if shutil.which("git") is None:
        return False
    created = run(["git", "init", "--quiet", path], capture=True, check=False, timeout=60)
    if created.returncode != 0:
        return False
    # The branch `bootlab taxonomy diff` compares with, whatever init.defaultBranch says.
    run(
        ["git", "symbolic-ref", "HEAD", "refs/heads/main"],
        capture=True,
        cwd=path,
        check=False,
        timeout=60,
    )
    return True
