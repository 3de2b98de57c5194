"""The Coveo SIGIR eCom 2021 release's published figures (DESIGN.md section 3), in one place.

The synthetic generator is calibrated to them (some are its parameters) and prints its own figures
beside them; tests hold the generator and the warehouse's distribution bounds to them.
"""

from __future__ import annotations

BROWSING_ROWS = 36_079_307
SESSIONS = 4_934_699
SKUS_SEEN = 57_483
PAGEVIEWS = 25_647_696
DETAILS = 9_707_890
ADDS = 329_557
REMOVES = 316_316
PURCHASES = 77_848
SESSIONS_WITH_ADD = 214_684
SESSIONS_WITH_PURCHASE = 53_209
SESSION_LENGTH_MEDIAN = 3
SESSION_LENGTH_P90 = 17
SESSION_LENGTH_P95 = 27
SESSION_LENGTH_MAX = 206
SEARCH_ROWS = 819_516
SEARCH_SESSIONS = 550_100
SEARCH_ROWS_WITH_CLICKS = 179_495
CATALOG_ROWS = 66_386
CATALOG_WITH_DESCRIPTION = 31_950
CATALOG_WITH_IMAGE = 28_370
CATALOG_WITH_NO_PRICE = 34_348
