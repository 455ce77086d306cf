#!/usr/bin/env Rscript
## Regenerate tests/fixtures/glmer_profile.json: lme4's profile-likelihood intervals of
## glmer fits, `confint(m, method = "profile")` (issue #16): the variance parameters
## (.sig01, .sig02, ...: SDs and within-term correlations, lme4's oldNames) and the
## fixed effects. Tests never need R.
##
## Usage (from the repo root):
##   Rscript tests/r/make_glmer_profile_fixtures.R [DATA_DIR] [OUT_JSON] [--contraception]
## DATA_DIR defaults to ../shared/data, OUT_JSON to tests/fixtures/glmer_profile.json.
## Runtime: ~1 min for the default cases on 2 shared cores; --contraception adds lme4's
## profile of the contraception fit, which took 75 min there (the committed JSON has it: see
## meta.cases and meta.contraception).
## glmm_sim.csv is read from tests/fixtures (written by make_glmer_fixtures.R).
## Cases: cbpp (Laplace, one scalar term), sim_pois_offset (Poisson with a correlated
## random slope, (x | g)), sim_nb_offset (glmer.nb: lme4 profiles with the NB theta held
## at its estimate) and, with --contraception, contraception ((urban | district), Laplace). A Gamma fit is recorded
## as lme4's refusal (it cannot profile GLMMs with a scale parameter). No timings or paths
## in the output: a rerun with the same data and versions reproduces the JSON.

source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))),
              "common.R"))
load_packages(c("lme4", "jsonlite"))
opts <- fixture_args("tests/fixtures/glmer_profile.json", flags = "--contraception")
data_dir <- opts$data_dir
out_json <- opts$out_json

CTRL <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
CTRL_TEXT <- 'glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))'

rd <- function(f, chr) {
  read.csv(f, stringsAsFactors = FALSE, colClasses = setNames(rep("character", length(chr)), chr))
}
int_levels <- function(x) as.character(sort(unique(as.integer(x))))

cbpp_d <- rd(file.path(data_dir, "cbpp.csv"), c("herd", "period"))
cbpp_d$herd <- factor(cbpp_d$herd, levels = as.character(1:15))
cbpp_d$period <- factor(cbpp_d$period, levels = as.character(1:4))

sim <- read.csv("tests/fixtures/glmm_sim.csv", colClasses = c(g = "character"))
sim$g <- factor(sim$g, levels = sort(unique(sim$g)))

contra <- rd(file.path(data_dir, "contraception.csv"), c("woman", "district", "use", "livch", "urban"))
contra$district <- factor(contra$district, levels = int_levels(contra$district))
contra$use <- factor(contra$use, levels = c("N", "Y"))
contra$livch <- factor(contra$livch, levels = c("0", "1", "2", "3+"))
contra$urban <- factor(contra$urban, levels = c("N", "Y"))

ci_list <- function(ci) {
  setNames(lapply(seq_len(nrow(ci)), function(i) list(lower = unname(ci[i, 1]), upper = unname(ci[i, 2]))),
           rownames(ci))
}

one <- function(m, formula, data, family, nb = FALSE) {
  ci <- suppressWarnings(confint(m, method = "profile", level = 0.95))
  list(formula = formula, data = data, family = family, nagq = 1L, glmer_nb = nb,
       theta = unname(getME(m, "theta")), beta = unname(fixef(m)),
       nb_theta = if (nb) unname(getME(m, "glmer.nb.theta")) else NULL,
       logLik = as.numeric(logLik(m)), confint_profile = ci_list(ci),
       rows = rownames(ci))
}

cases <- list()
f <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
cases$cbpp <- one(glmer(as.formula(f), cbpp_d, family = binomial, control = CTRL), f, "cbpp", "binomial")
f <- "y_pois ~ x + offset(log(exposure)) + (x | g)"
cases$sim_pois_offset <- one(glmer(as.formula(f), sim, family = poisson, control = CTRL), f, "glmm_sim", "poisson")
f <- "y_nb ~ x + offset(log(exposure)) + (1 | g)"
cases$sim_nb_offset <- one(glmer.nb(as.formula(f), sim, control = CTRL), f, "glmm_sim", "negativebinomial",
                           nb = TRUE)
if ("--contraception" %in% opts$flags) {
  f <- "use ~ age + I(age^2) + urban + livch + (urban | district)"
  cases$contraception <- one(glmer(as.formula(f), contra, family = binomial, control = CTRL), f,
                             "contraception", "binomial")
}
f <- "y_gamma ~ x + (1 | g)"
mg <- glmer(as.formula(f), sim, family = Gamma(link = "log"), control = CTRL)
gamma_err <- tryCatch({confint(mg, method = "profile"); "no error"}, error = function(e) conditionMessage(e))

out <- list(
  meta = fixture_meta("tests/r/make_glmer_profile_fixtures.R", c("lme4", "Matrix", "jsonlite"),
    control = CTRL_TEXT, cases = names(cases),
    conventions = list(
      confint = "confint(m, method = 'profile', level = 0.95): lme4 profiles on a grid and inverts an interpolating spline (backSpline); rows .sig01, ... are lme4's oldNames: per factor the lower triangle of its covariance column-major, SDs on the diagonal, correlations off it",
      nb = "glmer.nb fits are profiled by lme4 with the NB theta held at its estimate (the family is fixed in the merMod)",
      gamma = "lme4 refuses to profile GLMMs with a scale parameter (Gamma): its message is gamma_error")),
  gamma_error = gamma_err,
  cases = cases)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null", null = "null", pretty = 1), out_json)
cat("wrote", out_json, "\n")
