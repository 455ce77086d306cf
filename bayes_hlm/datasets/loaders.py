"""Bundled reference data sets with R's column types and factor level orders.

The files under ``data/`` are the CSV exports of the R objects (R 4.2.2,
lme4 1.1-31, mlmRev 1.0-8, nlme 3.1-162), gzip-compressed byte for byte. Every
R factor becomes an unordered pandas ``Categorical`` of strings whose category
order is R's level order, so the first category is the reference level of
treatment contrasts and fixed effects line up with ``lme4``'s.

R *ordered* factors (``InstEval``'s ``studage``/``lectage``, ``Hsb82``'s
``school``) are loaded as unordered categoricals on purpose: R would give an
ordered factor polynomial contrasts (``.L``, ``.Q``, ...) by default; here they
get treatment contrasts against the first level. R numeric columns are
``float64`` (even where every value is a whole number, e.g. ``Days``), R integer
columns are ``int64``.

The generalized-model data (``cbpp``, ``grouseticks``, ``verbagg``,
``contraception``) follow the same rules, with one deliberate exception: count
columns (``cbpp.incidence``/``size``, ``grouseticks.TICKS``) are ``int64``
although R stores them as doubles (every value is a whole number), because they
are binomial/Poisson responses. A two-level factor response keeps R's level
order, whose first level is the *failure* (``use``/``r2``: ``N``, then ``Y``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

__all__ = ["load", "names"]


def _int_sorted(values) -> list[str]:
    return sorted(pd.unique(np.asarray(values, dtype=object)), key=int)


@dataclass(frozen=True)
class _Spec:
    file: str
    #: column -> "float" | "int" | list of levels | callable(values) -> levels
    columns: dict
    doc: str


# R's level order of InstEval$dept ("15" is the reference level). R shows it
# in str(InstEval) as `Factor w/ 14 levels "15","5","10",..`; the positions of
# "15", "5", "10", "6", "3", "11", "2" are confirmed by matching the integer
# codes str() prints for the first rows against the exported labels.
_INSTEVAL_DEPT = ["15", "5", "10", "12", "6", "7", "4", "8", "9", "14", "1", "3", "11", "2"]

# R's level order of VerbAgg$item (order of appearance, not alphabetical;
# "S4wantCurse" really has a lower-case "w" in lme4's data).
_VERBAGG_ITEM = [
    f"S{s}{mode}{b}"
    for mode in ("Want", "Do")
    for s in (1, 2, 3, 4)
    for b in ("Curse", "Scold", "Shout")
]
_VERBAGG_ITEM[_VERBAGG_ITEM.index("S4WantCurse")] = "S4wantCurse"

_SPECS: dict[str, _Spec] = {
    "sleepstudy": _Spec(
        "sleepstudy.csv.gz",
        {"Reaction": "float", "Days": "float", "Subject": _int_sorted},
        "lme4::sleepstudy",
    ),
    "hsb82": _Spec(
        "hsb82.csv.gz",
        {
            "school": _int_sorted,
            "minrty": ["No", "Yes"],
            "sx": ["Male", "Female"],
            "ses": "float",
            "mAch": "float",
            "meanses": "float",
            "sector": ["Public", "Catholic"],
            "cses": "float",
        },
        "mlmRev::Hsb82",
    ),
    "mathachschool": _Spec(
        "mathachschool.csv.gz",
        {
            "School": _int_sorted,
            "Size": "float",
            "Sector": ["Public", "Catholic"],
            "PRACAD": "float",
            "DISCLIM": "float",
            "HIMINTY": ["0", "1"],
            "MEANSES": "float",
        },
        "nlme::MathAchSchool",
    ),
    "mathachieve": _Spec(
        "mathachieve.csv.gz",
        {
            "School": _int_sorted,
            "Minority": ["No", "Yes"],
            "Sex": ["Male", "Female"],
            "SES": "float",
            "MathAch": "float",
            "MEANSES": "float",
        },
        "nlme::MathAchieve",
    ),
    "penicillin": _Spec(
        "penicillin.csv.gz",
        {
            "diameter": "float",
            "plate": list("abcdefghijklmnopqrstuvwx"),
            "sample": list("ABCDEF"),
        },
        "lme4::Penicillin",
    ),
    "insteval": _Spec(
        "insteval.csv.gz",
        {
            "s": _int_sorted,
            "d": _int_sorted,
            "studage": ["2", "4", "6", "8"],
            "lectage": ["1", "2", "3", "4", "5", "6"],
            "service": ["0", "1"],
            "dept": _INSTEVAL_DEPT,
            "y": "int",
        },
        "lme4::InstEval",
    ),
    "cbpp": _Spec(
        "cbpp.csv.gz",
        {
            "herd": [str(i) for i in range(1, 16)],
            "incidence": "int",
            "size": "int",
            "period": ["1", "2", "3", "4"],
        },
        "lme4::cbpp",
    ),
    "grouseticks": _Spec(
        "grouseticks.csv.gz",
        {
            "INDEX": _int_sorted,
            "TICKS": "int",
            "BROOD": _int_sorted,
            "HEIGHT": "float",
            "YEAR": ["95", "96", "97"],
            "LOCATION": _int_sorted,
            "cHEIGHT": "float",
        },
        "lme4::grouseticks",
    ),
    "verbagg": _Spec(
        "verbagg.csv.gz",
        {
            "Anger": "int",
            "Gender": ["F", "M"],
            "item": _VERBAGG_ITEM,
            "resp": ["no", "perhaps", "yes"],
            "id": _int_sorted,
            "btype": ["curse", "scold", "shout"],
            "situ": ["other", "self"],
            "mode": ["want", "do"],
            "r2": ["N", "Y"],
        },
        "lme4::VerbAgg",
    ),
    "contraception": _Spec(
        "contraception.csv.gz",
        {
            "woman": _int_sorted,
            "district": _int_sorted,
            "use": ["N", "Y"],
            "livch": ["0", "1", "2", "3+"],
            "age": "float",
            "urban": ["N", "Y"],
        },
        "mlmRev::Contraception",
    ),
}

#: School-level columns of ``mathachschool`` that ``load("hsb82", with_school=True)`` adds.
SCHOOL_COLUMNS = ("Size", "PRACAD", "DISCLIM", "HIMINTY")


def names() -> list[str]:
    """Names of the bundled data sets, for :func:`load`.

    Returns
    -------
    list of str
        ``['cbpp', 'contraception', 'grouseticks', 'hsb82', 'insteval',
        'mathachieve', 'mathachschool', 'penicillin', 'sleepstudy',
        'verbagg']``.
    """
    return sorted(_SPECS)


def _categorical(raw: pd.Series, levels, name: str, dataset: str) -> pd.Categorical:
    if callable(levels):
        levels = levels(raw)
    levels = list(levels)
    values = raw.to_numpy(dtype=object)
    cat = pd.Categorical(values, categories=levels)
    bad = cat.isna() & ~pd.isna(values)
    if bad.any():  # a label outside the declared levels: never turn it into NaN silently
        unknown = sorted(set(values[bad]))[:5]
        raise ValueError(
            f"dataset {dataset!r}, column {name!r}: values {unknown} are not among the "
            f"declared levels {levels}; the bundled file does not match its specification"
        )
    return cat


@functools.lru_cache(maxsize=None)
def _read(name: str) -> pd.DataFrame:
    spec = _SPECS[name]
    dtypes = {c: ("float64" if t == "float" else "int64" if t == "int" else object) for c, t in spec.columns.items()}
    with resources.files(__package__).joinpath("data", spec.file).open("rb") as fh:
        raw = pd.read_csv(fh, compression="gzip", dtype=dtypes, keep_default_na=False, na_values=["NA"])
    if list(raw.columns) != list(spec.columns):
        raise ValueError(
            f"dataset {name!r}: bundled file has columns {list(raw.columns)}, expected {list(spec.columns)}"
        )
    out = {}
    for col, kind in spec.columns.items():
        if kind in ("float", "int"):
            out[col] = raw[col].to_numpy(dtype="float64" if kind == "float" else "int64")
        else:
            out[col] = _categorical(raw[col], kind, col, name)
    return pd.DataFrame(out)


def load(name: str, *, with_school: bool = False) -> pd.DataFrame:
    """Load a bundled reference data set as a fresh ``DataFrame``.

    Factors are unordered ``Categorical`` columns of strings whose categories
    follow R's level order (first category = reference level); numeric columns
    are ``float64``; integer and count columns (``insteval.y``,
    ``verbagg.Anger``, ``cbpp.incidence``/``size``, ``grouseticks.TICKS``)
    are ``int64``. Every call returns a new,
    independent copy, so callers may modify it freely.

    Parameters
    ----------
    name : str
        One of :func:`names` (case-insensitive):

        ``"sleepstudy"`` (lme4::sleepstudy, 180 rows): reaction times of 18
            subjects over 10 days of sleep deprivation.

            - ``Reaction`` (float): average reaction time, ms.
            - ``Days`` (float): days of sleep deprivation, 0-9.
            - ``Subject`` (category, 18 levels ``"308"`` ... ``"372"`` sorted
              numerically, as in R).

        ``"hsb82"`` (mlmRev::Hsb82, 7185 rows): High School and Beyond 1982,
            7185 students in 160 schools.

            - ``school`` (category, 160 levels): school id. R stores it as an
              ordered factor whose level order is neither numeric nor by file
              position; here the levels are sorted numerically ("1224" first),
              which is also the order in which schools first appear in the
              file. As a grouping factor its level order does not change any
              fit.
            - ``minrty`` (category ``["No", "Yes"]``): student is a minority.
            - ``sx`` (category ``["Male", "Female"]``): student's sex.
            - ``ses`` (float): socio-economic status.
            - ``mAch`` (float): math achievement score (the response).
            - ``meanses`` (float): mean ``ses`` of the school's sampled
              students.
            - ``sector`` (category ``["Public", "Catholic"]``): school sector.
            - ``cses`` (float): ``ses - meanses`` (school-mean-centred ses).

        ``"mathachschool"`` (nlme::MathAchSchool, 160 rows): the HS&B school
            file.

            - ``School`` (category, 160 levels, numeric order).
            - ``Size`` (float): school enrolment.
            - ``Sector`` (category ``["Public", "Catholic"]``).
            - ``PRACAD`` (float): proportion of students on the academic track.
            - ``DISCLIM`` (float): disciplinary climate.
            - ``HIMINTY`` (category ``["0", "1"]``): more than 40% minority.
            - ``MEANSES`` (float): school mean ses from the school file (not
              exactly the sample mean ``hsb82.meanses``).

        ``"mathachieve"`` (nlme::MathAchieve, 7185 rows): the same students as
            ``hsb82`` with nlme's column names.

            - ``School`` (category, numeric order), ``Minority`` (category
              ``["No", "Yes"]``), ``Sex`` (category ``["Male", "Female"]``),
              ``SES`` (float), ``MathAch`` (float), ``MEANSES`` (float, the
              school-file value repeated per student).

        ``"penicillin"`` (lme4::Penicillin, 144 rows): penicillin assay, 24
            plates x 6 samples fully crossed.

            - ``diameter`` (float): inhibition zone diameter, mm.
            - ``plate`` (category ``"a"`` ... ``"x"``): assay plate.
            - ``sample`` (category ``"A"`` ... ``"F"``): penicillin sample.

        ``"insteval"`` (lme4::InstEval, 73421 rows): ETH Zurich lecture
            evaluations; large crossed design.

            - ``s`` (category, 2972 levels, numeric order): student.
            - ``d`` (category, 1128 levels, numeric order): lecturer.
            - ``studage`` (category ``["2", "4", "6", "8"]``): student's
              semester number (an ordered factor in R).
            - ``lectage`` (category ``["1", ..., "6"]``): how many semesters
              back the lecture took place (an ordered factor in R).
            - ``service`` (category ``["0", "1"]``): lecture held for a
              department other than the lecturer's own.
            - ``dept`` (category, 14 levels in R's order ``"15", "5", "10",
              "12", "6", "7", "4", "8", "9", "14", "1", "3", "11", "2"``;
              reference level ``"15"``): department of the lecture.
            - ``y`` (int64): rating 1 (poor) to 5 (very good).

        ``"cbpp"`` (lme4::cbpp, 56 rows): contagious bovine pleuropneumonia in
            15 Ethiopian zebu herds, followed over 4 periods (Lesnoff et al.
            2004). Binomial counts.

            - ``herd`` (category ``"1"`` ... ``"15"``): herd.
            - ``incidence`` (int64): new serological cases in the period
              (the successes).
            - ``size`` (int64): herd size at the start of the period (the
              trials).
            - ``period`` (category ``["1", "2", "3", "4"]``): period.

            Classic model (lme4's example): ``cbind(incidence, size -
            incidence) ~ period + (1 | herd)``, binomial logit, by Laplace or
            ``nAGQ = 9``; ``incidence / size`` with ``weights = size`` is the
            same model.

        ``"grouseticks"`` (lme4::grouseticks, 403 rows): ticks counted on the
            heads of red grouse chicks (one row per chick) in 118 broods at 63
            locations over three years (Elston et al. 2001). Poisson counts,
            overdispersed.

            - ``INDEX`` (category, 403 levels ``"1"`` ... ``"403"``): chick,
              one level per row (an observation-level effect).
            - ``TICKS`` (int64): number of ticks (the response).
            - ``BROOD`` (category, 118 levels, numeric order): brood.
            - ``HEIGHT`` (float): height above sea level of the location, m.
            - ``YEAR`` (category ``["95", "96", "97"]``): year, 1995-97.
            - ``LOCATION`` (category, 63 levels, numeric order): location.
            - ``cHEIGHT`` (float): ``HEIGHT`` centred at its sample mean
              (462.24), as in lme4's example.

            Classic model: ``TICKS ~ YEAR + cHEIGHT + (1 | BROOD) +
            (1 | LOCATION)``, Poisson log, optionally with ``(1 | INDEX)``
            for overdispersion (broods are nested in locations).

        ``"verbagg"`` (lme4::VerbAgg, 7584 rows): verbal aggression
            questionnaire, 316 respondents x 24 items, fully crossed
            (De Boeck & Wilson 2004).

            - ``Anger`` (int64): the respondent's trait anger score.
            - ``Gender`` (category ``["F", "M"]``).
            - ``item`` (category, 24 levels in R's order ``"S1WantCurse"``,
              ``"S1WantScold"``, ..., ``"S4WantShout"``, ``"S1DoCurse"``, ...,
              ``"S4DoShout"``; R's label ``"S4wantCurse"`` has a lower-case
              ``w``).
            - ``resp`` (category ``["no", "perhaps", "yes"]``): the answer; an
              ordered factor in R, loaded unordered like every factor here.
            - ``id`` (category, 316 levels, numeric order): respondent.
            - ``btype`` (category ``["curse", "scold", "shout"]``): behaviour.
            - ``situ`` (category ``["other", "self"]``): situation type
              (someone else or oneself to blame).
            - ``mode`` (category ``["want", "do"]``): wanting to vs doing.
            - ``r2`` (category ``["N", "Y"]``): ``resp`` dichotomised ("no"
              vs "perhaps"/"yes"); the binary response, ``N`` = failure.

            Classic model (lme4's example): ``r2 ~ (Anger + Gender + btype +
            situ) + (1 | id) + (1 | item)``, binomial logit, crossed.

        ``"contraception"`` (mlmRev::Contraception, 1934 rows): 1988
            Bangladesh Fertility Survey, contraceptive use of 1934 women in 60
            districts.

            - ``woman`` (category, 1934 levels, numeric order): woman, one per
              row.
            - ``district`` (category, 60 levels, numeric order ``"1"`` ...
              ``"61"``; there is no district 54).
            - ``use`` (category ``["N", "Y"]``): uses contraception; the binary
              response, ``N`` = failure.
            - ``livch`` (category ``["0", "1", "2", "3+"]``): number of living
              children.
            - ``age`` (float): age in years, centred at the sample mean.
            - ``urban`` (category ``["N", "Y"]``): urban resident.

            Classic model (mlmRev's vignette): ``use ~ age + I(age^2) + urban
            + livch + (urban | district)``, binomial logit, with a correlated
            urban slope per district.

    with_school : bool, default False
        Only for ``"hsb82"``: left-join the school-level predictors ``Size``,
        ``PRACAD``, ``DISCLIM`` and ``HIMINTY`` from ``mathachschool`` on
        ``school == School``, keeping hsb82's rows and their order.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    ValueError
        If ``name`` is not a bundled data set, or ``with_school=True`` is used
        with a data set other than ``"hsb82"``.

    Examples
    --------
    >>> from bayes_hlm import datasets
    >>> df = datasets.load("sleepstudy")
    >>> df.shape
    (180, 3)
    >>> list(datasets.load("hsb82").sector.cat.categories)
    ['Public', 'Catholic']
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in _SPECS:
        import difflib

        close = difflib.get_close_matches(key, names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(names())}.{hint}")
    if with_school and key != "hsb82":
        raise ValueError(
            f"with_school=True only applies to 'hsb82' (it joins mathachschool's school-level "
            f"predictors); got {name!r}"
        )
    df = _read(key).copy(deep=True)
    if with_school:
        school = _read("mathachschool").set_index("School")
        # Both sides have the same 160 labels; index by hsb82's school labels so
        # the result keeps hsb82's row order (a left join; no school is missing).
        idx = school.index.get_indexer(df["school"].astype(object))
        missing = idx < 0
        for col in SCHOOL_COLUMNS:
            src = school[col]
            if isinstance(src.dtype, pd.CategoricalDtype):
                codes = np.where(missing, -1, src.cat.codes.to_numpy()[idx])
                df[col] = pd.Categorical.from_codes(codes, dtype=src.dtype)
            else:
                vals = src.to_numpy(dtype="float64")[idx]
                vals[missing] = np.nan
                df[col] = vals
    return df
