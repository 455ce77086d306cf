#!/usr/bin/env Rscript
## Time an lme4::glmer (or glmer.nb) fit on a CSV and print one JSON object on stdout.
##
## Usage:
##   Rscript benchmarks/r/glmer_timing.R DATA.csv FORMULA --family binomial [--link logit]
##           [--nagq 1] [--weights COL] [--n 3]
## --family: binomial | poisson | Gamma | negative_binomial (glmer.nb). Control as the pinned
## fixtures: glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)).
## Output: {"wall_s": median elapsed s of N fits (data loaded), "runs_s": [...], "cpu_s": median
##          process CPU (user + system) s, "logLik": ..,
##          "fixed": {...}, "theta": {...}, "nb_theta": .., "singular": .., "messages": [...],
##          "versions": {...}}
## Column types: quoted fields in the CSV's first data row are factors, others numeric.

suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
args <- commandArgs(trailingOnly = TRUE)
pos <- character(); fam <- "binomial"; link <- NA; nagq <- 1L; w <- NA; n_runs <- 3L
i <- 1L
while (i <= length(args)) {
  a <- args[[i]]
  if (a == "--family") { fam <- args[[i + 1L]]; i <- i + 2L; next }
  if (a == "--link") { link <- args[[i + 1L]]; i <- i + 2L; next }
  if (a == "--nagq") { nagq <- as.integer(args[[i + 1L]]); i <- i + 2L; next }
  if (a == "--weights") { w <- args[[i + 1L]]; i <- i + 2L; next }
  if (a == "--n") { n_runs <- as.integer(args[[i + 1L]]); i <- i + 2L; next }
  pos <- c(pos, a); i <- i + 1L
}
stopifnot(length(pos) == 2L)
csv <- pos[[1]]; form <- as.formula(pos[[2]])
first <- readLines(csv, n = 2L)
hdr <- scan(text = first[1], what = "", sep = ",", quiet = TRUE)
raw <- strsplit(first[2], ",", fixed = TRUE)[[1]]
quoted <- startsWith(trimws(raw), "\"")
cc <- ifelse(quoted, "character", NA_character_); names(cc) <- hdr
dat <- read.csv(csv, colClasses = cc, stringsAsFactors = FALSE, check.names = FALSE)
for (v in names(dat)) if (is.character(dat[[v]])) {
  u <- unique(dat[[v]])
  lev <- if (all(grepl("^-?[0-9]+$", u))) as.character(sort(as.integer(u))) else sort(u)
  dat[[v]] <- factor(dat[[v]], levels = lev)
}
CTRL <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
fit1 <- function() {
  if (fam == "negative_binomial") return(glmer.nb(form, data = dat, control = CTRL))
  f <- if (is.na(link)) get(fam)() else get(fam)(link = link)
  if (is.na(w)) glmer(form, data = dat, family = f, nAGQ = nagq, control = CTRL)
  else { dat$.w <- dat[[w]]; glmer(form, data = dat, family = f, weights = .w, nAGQ = nagq, control = CTRL) }
}
runs <- numeric(n_runs); cpus <- numeric(n_runs); m <- NULL; msgs <- character()
for (k in seq_len(n_runs)) {
  t <- system.time(m <- withCallingHandlers(fit1(), warning = function(w) {
    msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(mm) { msgs <<- c(msgs, conditionMessage(mm)); invokeRestart("muffleMessage") }))
  runs[k] <- t[["elapsed"]]
  cpus[k] <- t[["user.self"]] + t[["sys.self"]]
}
cf <- summary(m)$coefficients
out <- list(
  wall_s = median(runs), runs_s = runs, cpu_s = median(cpus), n_runs = n_runs, logLik = as.numeric(logLik(m)),
  fixed = setNames(lapply(seq_len(nrow(cf)), function(j) list(estimate = cf[j, 1], se = cf[j, 2])), rownames(cf)),
  theta = as.list(getME(m, "theta")),
  nb_theta = if (fam == "negative_binomial") getME(m, "glmer.nb.theta") else NA,
  singular = isSingular(m), messages = unique(msgs), n_obs = nobs(m),
  versions = list(lme4 = as.character(packageVersion("lme4")), R = R.version.string))
cat(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null"))
