"""The repository side of surveyqa: opening repositories, dataset types, fast reads of QA tables."""


from surveyqa.butler.reader import QARepository
from surveyqa.butler.repo import check_collection, create_repo, open_repo

__all__ = ["QARepository", "open_repo", "create_repo", "check_collection"]
