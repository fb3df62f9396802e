"""Reading the users' current status: ``GET /users/list`` paged until every wanted user is seen.

In: any client that can page the list (:class:`StateReader`; ``pcxbatch.client.PcxClient`` is
one), the user IDs wanted, the job's ``org_id`` filter and page size. Out: the status of each
wanted user that exists, and how many pages were read; :class:`PagingError` when the paging
never ends (a repeated page key, or far more pages than the list's ``total`` needs).

PCX has no single-user read (pcxbatch/CONTRACT.md), so a preview, and any read before or after
sending, is a listing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from pcxbatch.errors import StoppedError
from pcxbatch.rules import DEFAULT_PAGE_SIZE


class UserLike(Protocol):
    """What a listed user offers (``pcxbatch.client.UserState``)."""

    @property
    def user_id(self) -> str: ...
    @property
    def status(self) -> str: ...


class Page(Protocol):
    """One page of ``GET /users/list`` (``pcxbatch.model.UsersPage``)."""

    @property
    def users(self) -> Sequence[UserLike]: ...
    @property
    def key(self) -> str | None: ...
    @property
    def total(self) -> int | None: ...


class StateReader(Protocol):
    """A client that can page ``GET /users/list`` (``pcxbatch.client.PcxClient``)."""

    async def list_users(
        self,
        *,
        status: str | None = None,
        org_id: str | None = None,
        limit: int = 100,
        last_evaluated_key: str | None = None,
    ) -> Page: ...


async def read_states(
    client: StateReader,
    wanted: Collection[str],
    *,
    org_id: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    on_page: Callable[[int, int, int], None] | None = None,
) -> tuple[dict[str, str], int]:
    """Current status of each user in ``wanted`` that exists; also how many pages were read.

    PCX has no single-user read, so this pages ``GET /users/list`` (filtered by ``org_id`` when
    the job names one) until every wanted user was seen or the list ends. A user never seen
    does not exist (within the filter). ``on_page(pages, users listed, wanted found)`` is
    called after each page, for progress. A list that never ends (a page key seen before, or
    far more pages than its ``total`` needs) raises :class:`PagingError` rather than loop.
    """
    listed = 0
    found: dict[str, str] = {}
    key: str | None = None
    keys: set[str] = set()
    pages = 0
    while True:
        page = await client.list_users(org_id=org_id, limit=page_size, last_evaluated_key=key)
        users, key = page.users, page.key
        pages += 1
        listed += len(users)
        for user in users:
            if user.user_id in wanted:
                found[user.user_id] = user.status
        if on_page is not None:
            on_page(pages, listed, len(found))
        if key is None or len(found) == len(wanted):
            return found, pages
        _check_paging(key, keys, pages, page.total, page_size)


class PagingError(StoppedError):
    """``GET /users/list`` does not come to an end: its paging is broken."""


#: Pages a listing may take beyond what its ``total`` needs (users may be added meanwhile).
SPARE_PAGES = 10


def _check_paging(key: str, keys: set[str], pages: int, total: int | None, size: int) -> None:
    """Raise :class:`PagingError` when the next page would repeat the listing, or when far
    more pages were read than the list's own ``total`` needs; else remember ``key``."""
    if key in keys:
        raise PagingError(
            f"the user list does not end: page {pages} gave a last_evaluated_key an earlier page"
            " gave, so the API would send the same pages for ever; the listing was stopped"
        )
    keys.add(key)
    if total is not None and pages > 2 * (total // size + 1) + SPARE_PAGES:
        raise PagingError(
            f"the user list does not end: {pages} pages of {size} read, and the API says only"
            f" {total} users match; the listing was stopped"
        )
