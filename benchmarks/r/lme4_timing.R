#!/usr/bin/env Rscript
## Time an lme4::lmer fit on a CSV and print one JSON object on stdout.
##
## Usage:
##   Rscript benchmarks/r/lme4_timing.R DATA.csv "y ~ x + (1|g)" [--n 5] [--ml] [--levels col=a,b,c]...
##                                      [--family binomial|poisson|negbin]
## --family fits lme4::glmer (Laplace; glmer.nb for negbin) instead of lmer; then REML is FALSE,
## reml_criterion and sigma are null and "family" is set.
##
## Output (stdout, a single JSON object):
##   {"wall_s": <median elapsed s of N lmer fits, data already loaded>, "runs_s": [...],
##    "n_runs": N, "fixed": {"term": {"estimate":..,"se":..}, ...}, "reml_criterion": .. (null for ML),
##    "deviance": .. (ML only), "logLik": .., "sigma": .., "theta": {...}, "singular": bool,
##    "feval": <the optimiser's criterion evaluations>,
##    "n_obs": .., "ngrps": {...}, "formula": "...", "REML": bool, "versions": {...}}
##
## Column types: quoted fields in the CSV's first data row are factors (the convention of
## /work/shared/data), others numeric. Known reference levels (see /work/shared/data/README.md)
## are applied automatically when such a column exists; --levels col=l1,l2,... overrides.
## Diagnostics go to stderr; the fit's warnings/messages are reported in "warnings".

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

usage <- function() {
  cat("usage: lme4_timing.R DATA.csv FORMULA [--n N] [--ml] [--levels col=a,b,...] [--family F]\n",
      file = stderr())
  quit(status = 2)
}

args <- commandArgs(trailingOnly = TRUE)
pos <- character(); n_runs <- 3L; reml <- TRUE; lev_over <- list(); family <- NULL
i <- 1L
while (i <= length(args)) {
  a <- args[[i]]
  if (a == "--n") { n_runs <- as.integer(args[[i + 1L]]); i <- i + 2L; next }
  if (a == "--ml") { reml <- FALSE; i <- i + 1L; next }
  if (a == "--reml") { reml <- TRUE; i <- i + 1L; next }
  if (a == "--family") { family <- args[[i + 1L]]; reml <- FALSE; i <- i + 2L; next }
  if (a == "--levels") {
    kv <- strsplit(args[[i + 1L]], "=", fixed = TRUE)[[1]]
    lev_over[[kv[1]]] <- strsplit(kv[2], ",", fixed = TRUE)[[1]]
    i <- i + 2L; next
  }
  pos <- c(pos, a); i <- i + 1L
}
if (length(pos) != 2L || is.na(n_runs) || n_runs < 1L) usage()
csv <- pos[[1]]; form <- as.formula(pos[[2]])

## --- read: quoted columns (first data row) are factors
first <- readLines(csv, n = 2L)
hdr <- scan(text = first[1], what = "", sep = ",", quiet = TRUE)
raw <- strsplit(first[2], ",", fixed = TRUE)[[1]]
quoted <- startsWith(trimws(raw), "\"")
if (length(quoted) != length(hdr)) quoted <- rep(NA, length(hdr))  # commas inside fields: fall back
cc <- ifelse(is.na(quoted), NA_character_, ifelse(quoted, "character", NA_character_))
names(cc) <- hdr
dat <- read.csv(csv, colClasses = cc, stringsAsFactors = FALSE, check.names = FALSE)

known_levels <- list(
  minrty = c("No", "Yes"), sx = c("Male", "Female"), sector = c("Public", "Catholic"),
  Minority = c("No", "Yes"), Sex = c("Male", "Female"), Sector = c("Public", "Catholic"),
  sample = LETTERS[1:6], plate = letters[1:24], service = c("0", "1"),
  dept = c("15", "5", "10", "12", "6", "7", "4", "8", "9", "14", "1", "3", "11", "2"),
  studage = c("2", "4", "6", "8"), lectage = as.character(1:6)
)
for (nm in names(dat)) {
  if (!is.character(dat[[nm]])) next
  x <- dat[[nm]]
  lv <- if (!is.null(lev_over[[nm]])) lev_over[[nm]]
        else if (!is.null(known_levels[[nm]]) && all(unique(x) %in% known_levels[[nm]])) known_levels[[nm]]
        else if (!anyNA(suppressWarnings(as.numeric(unique(x))))) as.character(sort(unique(as.numeric(x))))
        else sort(unique(x))
  dat[[nm]] <- factor(x, levels = lv)
}

## --- fit (one untimed warm-up, whose warnings/messages are recorded), then N timed fits
fit_once <- function() {
  if (is.null(family)) return(lmer(form, data = dat, REML = reml))
  if (family == "negbin") return(glmer.nb(form, data = dat))
  glmer(form, data = dat, family = family)
}
w <- character()
m <- withCallingHandlers(fit_once(),
  warning = function(c) { w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning") },
  message = function(c) { w <<- c(w, trimws(conditionMessage(c))); invokeRestart("muffleMessage") })
runs <- vapply(seq_len(n_runs), function(k) {
  gc(FALSE)
  suppressWarnings(suppressMessages(system.time(fit_once())[["elapsed"]]))
}, numeric(1))

cf <- summary(m)$coefficients
fixed <- lapply(setNames(seq_len(nrow(cf)), rownames(cf)),
                function(k) list(estimate = cf[k, "Estimate"], se = cf[k, "Std. Error"]))
th <- getME(m, "theta")
res <- list(
  wall_s = median(runs),
  runs_s = I(runs),
  n_runs = n_runs,
  fixed = fixed,
  reml_criterion = if (reml) REMLcrit(m) else NA_real_,
  deviance = if (reml) NA_real_ else deviance(m),
  logLik = as.numeric(logLik(m)),
  sigma = if (is.null(family)) sigma(m) else NA_real_,
  family = if (is.null(family)) "gaussian" else family,
  theta = setNames(as.list(unname(th)), names(th)),
  singular = isSingular(m),
  feval = m@optinfo$feval,
  warnings = I(w),
  n_obs = nobs(m),
  ngrps = as.list(ngrps(m)),
  formula = pos[[2]],
  REML = reml,
  versions = list(R = paste(R.version$major, R.version$minor, sep = "."),
                  lme4 = as.character(packageVersion("lme4")),
                  Matrix = as.character(packageVersion("Matrix")))
)
cat(toJSON(res, auto_unbox = TRUE, digits = NA, na = "null"), "\n", sep = "")
