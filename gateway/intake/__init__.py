"""Intake: every door (legacy form, JSON API, spool folder, CLI) ends here.

`submission` checks, classifies and group-commits what the doors hand in;
`limits` bounds what one request may create, without the database.
"""

from gateway.intake.submission import Intake, IntakeError, Overloaded, Submission

__all__ = ["Intake", "IntakeError", "Overloaded", "Submission"]
