#!/usr/bin/env Rscript
## Regenerate tests/fixtures/glmer_reference.json (and the small data files it
## uses, tests/fixtures/glmm_sim.csv and tests/fixtures/machines.csv): lme4::glmer /
## glmer.nb / performance reference numbers for generalized models (issues #15, #16)
## and lme4's `(factor || g)` expansion (issue #19 item 2). Tests never need R.
##
## Usage (from the repo root):
##   Rscript tests/r/make_glmer_fixtures.R [DATA_DIR] [OUT_JSON]
## DATA_DIR defaults to ../shared/data (relative to the repo root),
## OUT_JSON defaults to tests/fixtures/glmer_reference.json.
## The output holds no time stamps, timings or paths: with the same data, R and
## package versions, a rerun reproduces the JSON and the CSVs byte for byte.

source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))),
              "common.R"))
load_packages(c("lme4", "lmerTest", "performance", "jsonlite"))
opts <- fixture_args("tests/fixtures/glmer_reference.json")
args <- opts$raw

## Byte-exact reruns: lme4's Eigen kernels use SIMD reductions whose rounding depends
## on memory alignment, so with address-space randomisation a flat likelihood
## (grouseticks with (1 | INDEX)) ends bobyqa at estimates that move in the 5th-6th
## significant digit from one R session to the next (logLik agrees to ~1e-11).
## Re-run this script once under `setarch -R` (randomisation off) where possible.
if (Sys.getenv("GLMER_FIXTURES_NO_ASLR") == "" && nzchar(Sys.which("setarch")) &&
    identical(suppressWarnings(system2("setarch", c(R.version$arch, "-R", "true"))), 0L)) {
  script <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
  status <- system2("setarch", c(R.version$arch, "-R", shQuote(file.path(R.home("bin"), "Rscript")),
                                 shQuote(script), shQuote(args)),
                    env = "GLMER_FIXTURES_NO_ASLR=1")
  quit(save = "no", status = status)
}
data_dir <- opts$data_dir
out_json <- opts$out_json
fixture_dir <- dirname(out_json)
dir.create(fixture_dir, showWarnings = FALSE, recursive = TRUE)

CTRL <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
CTRL_TEXT <- 'glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))'

## ------------------------------------------------------------------ data
## Read the CSVs (what bayes_hlm bundles) and set R's level orders explicitly, then
## check them against the R packages' own objects so the fits see lme4's data.
rd <- function(f, chr) {
  read.csv(file.path(data_dir, f), stringsAsFactors = FALSE,
           colClasses = setNames(rep("character", length(chr)), chr))
}
int_levels <- function(x) as.character(sort(unique(as.integer(x))))

cbpp_d <- rd("cbpp.csv", c("herd", "period"))
cbpp_d$herd <- factor(cbpp_d$herd, levels = as.character(1:15))
cbpp_d$period <- factor(cbpp_d$period, levels = as.character(1:4))

grouse <- rd("grouseticks.csv", c("INDEX", "BROOD", "YEAR", "LOCATION"))
for (v in c("INDEX", "BROOD", "LOCATION")) grouse[[v]] <- factor(grouse[[v]], levels = int_levels(grouse[[v]]))
grouse$YEAR <- factor(grouse$YEAR, levels = c("95", "96", "97"))
## cHEIGHT is in the file; it is HEIGHT centred at its sample mean as in lme4's
## ?grouseticks example (cHEIGHT <- HEIGHT - mean(HEIGHT)).
stopifnot(isTRUE(all.equal(grouse$cHEIGHT, grouse$HEIGHT - mean(grouse$HEIGHT), tolerance = 1e-12)))

verb <- rd("verbagg.csv", c("Gender", "item", "resp", "id", "btype", "situ", "mode", "r2"))
verb$Gender <- factor(verb$Gender, levels = c("F", "M"))
verb$item <- factor(verb$item, levels = unique(verb$item))  # R's order = order of appearance
verb$resp <- factor(verb$resp, levels = c("no", "perhaps", "yes"), ordered = TRUE)
verb$id <- factor(verb$id, levels = int_levels(verb$id))
verb$btype <- factor(verb$btype, levels = c("curse", "scold", "shout"))
verb$situ <- factor(verb$situ, levels = c("other", "self"))
verb$mode <- factor(verb$mode, levels = c("want", "do"))
verb$r2 <- factor(verb$r2, levels = c("N", "Y"))

contra <- rd("contraception.csv", c("woman", "district", "use", "livch", "urban"))
contra$woman <- factor(contra$woman, levels = int_levels(contra$woman))
contra$district <- factor(contra$district, levels = int_levels(contra$district))
contra$use <- factor(contra$use, levels = c("N", "Y"))
contra$livch <- factor(contra$livch, levels = c("0", "1", "2", "3+"))
contra$urban <- factor(contra$urban, levels = c("N", "Y"))

same_as_package <- function(ours, theirs) {
  stopifnot(identical(names(ours), names(theirs)), nrow(ours) == nrow(theirs))
  for (v in names(ours)) {
    a <- ours[[v]]; b <- theirs[[v]]
    if (is.factor(b)) stopifnot(identical(levels(a), levels(b)), identical(as.character(a), as.character(b)))
    else stopifnot(isTRUE(all.equal(as.numeric(a), as.numeric(b), tolerance = 1e-12)))
  }
  TRUE
}
invisible(same_as_package(cbpp_d, lme4::cbpp))
invisible(same_as_package(grouse, lme4::grouseticks))
invisible(same_as_package(verb, lme4::VerbAgg))
invisible(same_as_package(contra, mlmRev::Contraception))

## Small simulated data (fixed seed) for the Gamma, negative-binomial and
## Poisson-with-offset cases; written, then read back so the fit sees exactly the CSV.
RNGkind("Mersenne-Twister", "Inversion", "Rejection")
set.seed(20240615)
n_g <- 30L; per_g <- 10L
sim <- data.frame(g = rep(sprintf("g%02d", seq_len(n_g)), each = per_g))
sim$x <- round(rnorm(nrow(sim)), 4)
sim$exposure <- sample(1:20, nrow(sim), replace = TRUE)
gi <- as.integer(factor(sim$g))
b_gamma <- rnorm(n_g, 0, 0.5)
sim$y_gamma <- signif(rgamma(nrow(sim), shape = 2, rate = 2 / exp(1 + 0.5 * sim$x + b_gamma[gi])), 8)
b_nb <- rnorm(n_g, 0, 0.4)
sim$y_nb <- rnbinom(nrow(sim), size = 2, mu = sim$exposure * exp(-0.5 + 0.4 * sim$x + b_nb[gi]))
z1 <- rnorm(n_g); z2 <- rnorm(n_g)
b0 <- 0.5 * z1; b1 <- 0.3 * (0.4 * z1 + sqrt(1 - 0.4^2) * z2)   # SDs 0.5, 0.3, corr 0.4
sim$y_pois <- rpois(nrow(sim), sim$exposure * exp(-1 + 0.3 * sim$x + b0[gi] + b1[gi] * sim$x))
sim_csv <- file.path(fixture_dir, "glmm_sim.csv")
write.csv(sim, sim_csv, row.names = FALSE)
sim <- read.csv(sim_csv, colClasses = c(g = "character"))
sim$g <- factor(sim$g, levels = sprintf("g%02d", seq_len(n_g)))
sim_truth <- list(
  n_groups = n_g, rows_per_group = per_g, seed = 20240615L,
  rng = "Mersenne-Twister / Inversion / Rejection",
  x = "round(rnorm(n), 4)", exposure = "sample(1:20, n, replace = TRUE)",
  y_gamma = "Gamma(shape 2) with log mean 1 + 0.5 x + b_g, b_g ~ N(0, 0.5^2); signif(, 8)",
  y_nb = "NB2(theta 2) with mean exposure * exp(-0.5 + 0.4 x + b_g), b_g ~ N(0, 0.4^2)",
  y_pois = "Poisson with mean exposure * exp(-1 + 0.3 x + b0_g + b1_g x), SD(b0) 0.5, SD(b1) 0.3, corr 0.4"
)

## nlme::Machines for lme4's `(Machine || Worker)` expansion (Gaussian, REML).
## Worker is an ordered factor in nlme (levels 6,2,4,1,3,5); the CSV/fit use an
## unordered factor in numeric order (only the order of ranef rows depends on it).
mach <- data.frame(Worker = as.character(nlme::Machines$Worker),
                   Machine = as.character(nlme::Machines$Machine),
                   score = nlme::Machines$score)
mach_csv <- file.path(fixture_dir, "machines.csv")
write.csv(mach, mach_csv, row.names = FALSE)
mach <- read.csv(mach_csv, colClasses = c(Worker = "character", Machine = "character"))
mach$Worker <- factor(mach$Worker, levels = as.character(1:6))
mach$Machine <- factor(mach$Machine, levels = c("A", "B", "C"))

datasets <- list(cbpp = cbpp_d, grouseticks = grouse, verbagg = verb, contraception = contra,
                 glmm_sim = sim, machines = mach)
data_files <- list(cbpp = "cbpp.csv", grouseticks = "grouseticks.csv", verbagg = "verbagg.csv",
                   contraception = "contraception.csv", glmm_sim = "tests/fixtures/glmm_sim.csv",
                   machines = "tests/fixtures/machines.csv")
data_paths <- list(cbpp = file.path(data_dir, "cbpp.csv"), grouseticks = file.path(data_dir, "grouseticks.csv"),
                   verbagg = file.path(data_dir, "verbagg.csv"), contraception = file.path(data_dir, "contraception.csv"),
                   glmm_sim = sim_csv, machines = mach_csv)

## ------------------------------------------------------------------ cases
## f: the formula exactly as typed; fam: family call as text; nagq; weights: column
## name; nb: glmer.nb; lmer: Gaussian REML with lmerTest.
CBPP <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
GROUSE <- "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)"
cases <- list(
  cbpp_laplace   = list(f = CBPP, data = "cbpp", fam = "binomial", nagq = 1L, integrate = TRUE),
  cbpp_agq9      = list(f = CBPP, data = "cbpp", fam = "binomial", nagq = 9L, integrate = TRUE),
  cbpp_nagq0     = list(f = CBPP, data = "cbpp", fam = "binomial", nagq = 0L),
  cbpp_weights   = list(f = "incidence / size ~ period + (1 | herd)", data = "cbpp", fam = "binomial",
                        nagq = 1L, weights = "size"),
  cbpp_probit    = list(f = CBPP, data = "cbpp", fam = 'binomial(link = "probit")', nagq = 1L),
  cbpp_cloglog   = list(f = CBPP, data = "cbpp", fam = 'binomial(link = "cloglog")', nagq = 1L),
  grouse         = list(f = GROUSE, data = "grouseticks", fam = "poisson", nagq = 1L),
  grouse_olre    = list(f = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION) + (1 | INDEX)",
                        data = "grouseticks", fam = "poisson", nagq = 1L),
  grouse_nb      = list(f = GROUSE, data = "grouseticks", fam = "negative.binomial", nagq = 1L, nb = TRUE),
  verbagg        = list(f = "r2 ~ (Anger + Gender + btype + situ) + (1 | id) + (1 | item)", data = "verbagg",
                        fam = "binomial", nagq = 1L),
  contraception  = list(f = "use ~ age + I(age^2) + urban + livch + (urban | district)", data = "contraception",
                        fam = "binomial", nagq = 1L),
  sim_gamma_log  = list(f = "y_gamma ~ x + (1 | g)", data = "glmm_sim", fam = 'Gamma(link = "log")', nagq = 1L),
  sim_nb_offset  = list(f = "y_nb ~ x + offset(log(exposure)) + (1 | g)", data = "glmm_sim",
                        fam = "negative.binomial", nagq = 1L, nb = TRUE),
  sim_pois_offset = list(f = "y_pois ~ x + offset(log(exposure)) + (x | g)", data = "glmm_sim",
                         fam = "poisson", nagq = 1L)
)
gaussian_cases <- list(
  machines_double_bar = list(f = "score ~ Machine + (Machine || Worker)", data = "machines",
    note = "lme4 expands (Machine || Worker) to (1 | Worker) + (0 + Machine | Worker): the three Machine effects stay correlated"),
  machines_independent = list(
    f = 'score ~ Machine + (1 | Worker) + (0 + dummy(Machine, "A") | Worker) + (0 + dummy(Machine, "B") | Worker) + (0 + dummy(Machine, "C") | Worker)',
    data = "machines", note = "four independent variances (intercept + one per Machine level): the fully uncorrelated model"),
  machines_nested = list(f = "score ~ Machine + (1 | Worker) + (1 | Worker:Machine)", data = "machines",
    note = "the classic compound-symmetry model")
)

## ------------------------------------------------------------------ helpers
named_list <- function(x) { out <- as.list(unname(x)); names(out) <- names(x); out }
num <- function(x) if (is.null(x) || length(x) == 0) NA_real_ else as.numeric(x)
chr <- function(x) I(as.character(unlist(x)))

## Run expr, collecting warnings and messages instead of printing them.
capture <- function(expr) {
  w <- character(); msg <- character()
  val <- withCallingHandlers(expr,
    warning = function(c) { w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning") },
    message = function(c) { msg <<- c(msg, conditionMessage(c)); invokeRestart("muffleMessage") })
  list(value = val, warnings = w, messages = trimws(msg))
}

factor_name_map <- function(m) {
  cnms <- getME(m, "cnms"); asgn <- attr(getME(m, "flist"), "assign")
  fl <- names(getME(m, "flist")); vc <- names(VarCorr(m))
  out <- list(); for (i in seq_along(cnms)) out[[vc[i]]] <- fl[asgn[i]]
  out
}

coef_table <- function(m) {
  cf <- summary(m)$coefficients
  stat <- grep("value$", colnames(cf), value = TRUE)
  pcol <- grep("^Pr", colnames(cf), value = TRUE)
  res <- list()
  for (i in seq_len(nrow(cf))) {
    r <- list(estimate = cf[i, "Estimate"], se = cf[i, "Std. Error"])
    if ("df" %in% colnames(cf)) r$df <- cf[i, "df"]
    r[[if (startsWith(stat, "z")) "z" else "t"]] <- cf[i, stat]
    r$p <- cf[i, pcol]
    res[[rownames(cf)[i]]] <- r
  }
  list(table = res, statistic = stat, p_column = pcol)
}

varcorr_list <- function(m) {
  vc <- as.data.frame(VarCorr(m), order = "lower.tri")
  res <- list()
  for (g in setdiff(unique(vc$grp), "Residual")) {
    sub <- vc[vc$grp == g, ]
    sds <- sub[is.na(sub$var2), ]; cors <- sub[!is.na(sub$var2), ]
    empty <- setNames(list(), character())
    res[[g]] <- list(
      sd = named_list(setNames(sds$sdcor, sds$var1)),
      cor = if (nrow(cors)) named_list(setNames(cors$sdcor, paste(cors$var1, cors$var2, sep = ","))) else empty,
      cor_records = if (nrow(cors)) lapply(seq_len(nrow(cors)), function(i)
        list(term1 = cors$var1[i], term2 = cors$var2[i], corr = cors$sdcor[i])) else I(list())
    )
  }
  res
}

ranef_list <- function(m) {
  re <- ranef(m, condVar = TRUE)
  df <- as.data.frame(re)
  res <- list()
  for (g in names(re)) {
    lev <- rownames(re[[g]]); terms <- colnames(re[[g]]); sub <- df[df$grpvar == g, ]
    pick <- function(col) lapply(setNames(terms, terms), function(t) {
      s <- sub[sub$term == t, ]; I(unname(s[[col]][match(lev, as.character(s$grp))])) })
    res[[g]] <- list(n_levels = length(lev), levels = I(lev), terms = I(terms),
                     condval = pick("condval"), condsd = pick("condsd"))
  }
  res
}

## Saturated log-likelihood sum_i log f(y_i | mu_i = y_i) from the family's aic(),
## which lme4 leaves out of logLik() for nAGQ > 1 (it sums deviance residuals there).
## Only for binomial and Poisson: nAGQ > 1 needs them, and families with a scale
## parameter (Gamma) have no saturated value free of that parameter.
saturated_loglik <- function(m) {
  fam <- family(m); y <- m@resp$y
  if (!fam$family %in% c("binomial", "poisson")) return(NA_real_)
  -0.5 * fam$aic(y, m@resp$n, y, m@resp$weights, 0)
}

## lme4 stopped short of its optimum (a convergence message): restart the same
## fit from its own estimates and record where the restart ends, so a test can
## ask for a log-likelihood at least as high as the better of the two.
restart_info <- function(m) {
  r <- capture(update(m, start = list(theta = getME(m, "theta"), fixef = fixef(m))))
  m2 <- r$value
  list(how = "update(m, start = list(theta = getME(m, 'theta'), fixef = fixef(m)))",
       logLik = as.numeric(logLik(m2)), fixed = named_list(fixef(m2)), theta = named_list(getME(m2, "theta")),
       varcorr = varcorr_list(m2), converged_messages = chr(m2@optinfo$conv$lme4$messages),
       fit_warnings = I(r$warnings))
}

## Exact marginal log-likelihood of a binomial model with one scalar random
## intercept, at the fitted beta and SD, by adaptive numerical integration per group.
integrate_loglik <- function(m) {
  stopifnot(length(getME(m, "theta")) == 1L)
  fam <- family(m); sd <- getME(m, "theta")[[1]]
  eta_fixed <- drop(getME(m, "X") %*% fixef(m)) + getME(m, "offset")
  y <- m@resp$y; w <- m@resp$weights; grp <- getME(m, "flist")[[1]]
  total <- 0
  for (lv in levels(grp)) {
    i <- which(grp == lv)
    ll_cond <- function(u) vapply(u, function(ui) {
      mu <- fam$linkinv(eta_fixed[i] + sd * ui)
      sum(dbinom(round(w[i] * y[i]), round(w[i]), mu, log = TRUE))
    }, 0)
    mode <- optimize(function(u) ll_cond(u) + dnorm(u, log = TRUE), c(-10, 10), maximum = TRUE)
    c0 <- mode$objective
    val <- integrate(function(u) exp(ll_cond(u) + dnorm(u, log = TRUE) - c0), -Inf, Inf,
                     rel.tol = 1e-12, subdivisions = 1000L)$value
    total <- total + c0 + log(val)
  }
  total
}

perf_list <- function(m, family_name) {
  ic <- tryCatch(capture(performance::icc(m)), error = function(e) list(value = NULL, error = conditionMessage(e)))
  r2 <- tryCatch(capture(performance::r2_nakagawa(m)), error = function(e) list(value = NULL, error = conditionMessage(e)))
  gv <- tryCatch(capture(insight::get_variance(m)), error = function(e) list(value = NULL, error = conditionMessage(e)))
  icv <- if (is.list(ic$value)) ic$value else NULL
  r2v <- if (is.list(r2$value)) r2$value else NULL
  gvv <- if (is.list(gv$value)) gv$value else NULL
  note <- function(tag, r) c(if (!is.null(r$error)) paste(tag, "error:", r$error),
                             if (length(r$warnings)) paste(tag, "warning:", r$warnings),
                             if (length(r$messages)) paste(tag, "message:", r$messages))
  comp <- function(nm) if (is.null(gvv) || is.null(gvv[[nm]])) NA_real_ else num(sum(gvv[[nm]]))
  out <- list(
    method = "performance defaults: icc(m), r2_nakagawa(m); variance components from insight::get_variance(m)",
    icc_adjusted = if (is.null(icv)) NA_real_ else num(icv$ICC_adjusted),
    icc_conditional = if (is.null(icv)) NA_real_ else num(icv$ICC_conditional),
    icc_unadjusted = if (is.null(icv)) NA_real_ else num(icv$ICC_unadjusted),
    r2_marginal = if (is.null(r2v)) NA_real_ else num(r2v$R2_marginal),
    r2_conditional = if (is.null(r2v)) NA_real_ else num(r2v$R2_conditional),
    var_fixed = comp("var.fixed"), var_random = comp("var.random"),
    var_residual = comp("var.residual"), var_distribution = comp("var.distribution"),
    var_dispersion = comp("var.dispersion"),
    notes = I(c(character(), note("icc", ic), note("r2_nakagawa", r2), note("get_variance", gv)))
  )
  ## Poisson / NB: performance 0.10.2 (insight 0.19.0) offers only the lognormal
  ## approximation log1p(var(mu)/mu^2), with mu = exp(intercept of the null model
  ## refitted with the same random effects). The delta (var/mu^2 for Poisson: 1/mu)
  ## and trigamma (trigamma(1/(var/mu^2)); Poisson: trigamma(mu)) variants are given
  ## here from the same mu and components, marked as derived, not performance output.
  if (family_name %in% c("poisson") && !is.null(gvv)) {
    nm <- tryCatch(insight::null_model(m), error = function(e) NULL)
    if (!is.null(nm)) {
      mu <- exp(unname(fixef(nm)[1]))
      vf <- out$var_fixed; vr <- out$var_random
      ## performance counts an observation-level effect as var_dispersion, part of the residual
      vdisp <- if (is.na(out$var_dispersion)) 0 else out$var_dispersion
      variants <- list(lognormal = log1p(1 / mu), delta = 1 / mu, trigamma = trigamma(mu))
      out$null_model_intercept <- unname(fixef(nm)[1])
      out$null_model_mu <- mu
      out$approximations <- lapply(variants, function(vd) {
        ve <- vd + vdisp
        list(var_distribution = vd, var_residual = ve, icc_adjusted = vr / (vr + ve),
             icc_conditional = vr / (vf + vr + ve),
             r2_marginal = vf / (vf + vr + ve), r2_conditional = (vf + vr) / (vf + vr + ve))
      })
      out$approximations_note <- paste(
        "lognormal reproduces performance's default; delta and trigamma are derived in this script",
        "(performance 0.10.2 has no 'approximation' argument) with the same mu and variance components")
    }
  }
  out
}

fit_glmm <- function(name, cs) {
  cat(sprintf("[%s] %s  family=%s nAGQ=%d\n", name, cs$f, cs$fam, cs$nagq))
  dat <- datasets[[cs$data]]
  form <- as.formula(cs$f)
  if (isTRUE(cs$nb)) {
    fitres <- capture(glmer.nb(form, data = dat, control = CTRL))
  } else {
    fam <- eval(parse(text = cs$fam))
    fitres <- if (is.null(cs$weights)) {
      capture(glmer(form, data = dat, family = fam, nAGQ = cs$nagq, control = CTRL))
    } else {
      dat$.w <- dat[[cs$weights]]
      capture(glmer(form, data = dat, family = fam, weights = .w, nAGQ = cs$nagq, control = CTRL))
    }
  }
  m <- fitres$value
  fam <- family(m)
  ll <- logLik(m)
  k <- attr(ll, "df")
  ll_sat <- saturated_loglik(m)
  ## lme4's logLik is the full log-likelihood for nAGQ <= 1 (Laplace / nAGQ = 0) but
  ## omits the saturated term for nAGQ > 1 (deviance residuals are summed there).
  ll_full <- if (cs$nagq > 1L) as.numeric(ll) + ll_sat else as.numeric(ll)
  theta <- getME(m, "theta")
  tn <- lme4:::tnames(m, old = FALSE, prefix = c("sd", "cor"))
  ct <- coef_table(m)
  vc <- vcov(m)
  ## lme4's default SEs come from the finite-difference Hessian over (theta, beta);
  ## the RX-based ones (use.hessian = FALSE) condition on theta. They differ by a few
  ## per cent for binomial/Poisson fits; for Gamma the Hessian ones are wrong (see notes).
  se_rx <- suppressWarnings(sqrt(diag(as.matrix(vcov(m, use.hessian = FALSE)))))
  for (nm in names(ct$table)) ct$table[[nm]]$se_rx <- unname(se_rx[nm])
  used_factors <- names(getME(m, "flist"))
  out <- list(
    formula = cs$f,
    data = cs$data,
    fit_call = if (isTRUE(cs$nb)) sprintf("glmer.nb(%s, data = %s, control = %s)", cs$f, cs$data, CTRL_TEXT)
               else sprintf("glmer(%s, data = %s, family = %s, %snAGQ = %d, control = %s)", cs$f, cs$data,
                            cs$fam, if (is.null(cs$weights)) "" else sprintf("weights = %s, ", cs$weights),
                            cs$nagq, CTRL_TEXT),
    family = if (isTRUE(cs$nb)) "negative_binomial" else fam$family,
    family_r = fam$family,
    link = fam$link,
    nAGQ = cs$nagq,
    weights = if (is.null(cs$weights)) NA_character_ else cs$weights,
    n_obs = nobs(m),
    ngrps = named_list(ngrps(m)),
    factor_formula_name = factor_name_map(m),
    fixed = ct$table,
    fixed_statistic = ct$statistic,
    vcov_fixed = setNames(lapply(seq_len(nrow(vc)), function(i) I(unname(as.matrix(vc)[i, ]))), rownames(vc)),
    varcorr = varcorr_list(m),
    sigma = sigma(m),
    theta = named_list(theta),
    theta_param_names = named_list(setNames(unname(tn), names(theta))),
    nb_theta = if (isTRUE(cs$nb)) getME(m, "glmer.nb.theta") else NA_real_,
    logLik = as.numeric(ll),
    logLik_df = k,
    logLik_full = ll_full,
    loglik_saturated = ll_sat,
    deviance = deviance(m),
    minus2logLik = -2 * as.numeric(ll),
    objective = as.numeric(m@devcomp$cmp[["dev"]]),
    devcomp = named_list(m@devcomp$cmp[c("ldL2", "ldRX2", "wrss", "ussq", "pwrss", "drsum", "sigmaML")]),
    AIC = AIC(m),
    BIC = BIC(m),
    AIC_full = -2 * ll_full + 2 * k,
    BIC_full = -2 * ll_full + k * log(nobs(m)),
    df_residual = df.residual(m),
    singular = isSingular(m),
    converged_messages = chr(m@optinfo$conv$lme4$messages),
    optimizer = m@optinfo$optimizer,
    optimizer_message = num(m@optinfo$conv$opt),
    optimizer_text = if (is.null(m@optinfo$message)) NA_character_ else as.character(m@optinfo$message),
    optimizer_warnings = chr(m@optinfo$warnings),
    feval = num(m@optinfo$feval),
    max_abs_gradient = if (is.null(m@optinfo$derivs)) NA_real_ else max(abs(m@optinfo$derivs$gradient)),
    fit_warnings = I(fitres$warnings),
    fit_messages = I(fitres$messages),
    ranef = ranef_list(m),
    fitted_head = unname(head(fitted(m), 10)),
    eta_head = unname(head(predict(m, type = "link"), 10)),
    levels = lapply(setNames(used_factors, used_factors), function(v) nlevels(getME(m, "flist")[[v]]))
  )
  if (isTRUE(cs$integrate)) {
    out$logLik_integrate <- integrate_loglik(m)
    out$logLik_integrate_note <- "exact marginal log-likelihood at this fit's beta and SD by integrate() per herd (rel.tol 1e-12)"
  }
  if (length(out$converged_messages) && !isTRUE(cs$nb)) out$restart <- restart_info(m)
  if (fam$family == "Gamma") {
    ## How lme4 builds the Gamma objective, recomputed here so a test can check it:
    ## Gamma()$aic with dispersion = conditional deviance / n (and its "+2"),
    ## plus ldL2 + ussq; sigma(m) = sqrt(pwrss / n).
    y <- m@resp$y; mu <- m@resp$mu; w <- m@resp$weights; nn <- length(y)
    disp <- out$deviance / nn
    out$gamma_recipe <- list(
      dispersion = disp,
      aic_term = fam$aic(y, nn, mu, w, out$deviance),
      aic_term_by_hand = -2 * sum(w * dgamma(y, 1 / disp, scale = mu * disp, log = TRUE)) + 2,
      objective_by_hand = -2 * sum(w * dgamma(y, 1 / disp, scale = mu * disp, log = TRUE)) + 2 +
        m@devcomp$cmp[["ldL2"]] + m@devcomp$cmp[["ussq"]],
      sigma_by_hand = sqrt(m@devcomp$cmp[["pwrss"]] / nn),
      note = paste("lme4 (1.1-31) Gamma GLMM: the objective is Gamma()$aic(y, n, mu, wt, dev) (dispersion = dev/n,",
                   "a moment estimate, with the family's +2) + ldL2 + ussq; sigma = sqrt(pwrss/n). The default",
                   "(finite-difference Hessian) fixed-effect SEs are ~20x too small for this fit; se_rx",
                   "(vcov(use.hessian = FALSE)) is the usable reference, as is Nelder_Mead's higher logLik"))
  }
  fam_name <- if (isTRUE(cs$nb)) "negative_binomial" else fam$family
  out$performance <- perf_list(m, fam_name)
  cat(sprintf("    logLik=%.6f  full=%.6f  singular=%s  warnings=%d\n", out$logLik, out$logLik_full,
              out$singular, length(out$fit_warnings)))
  out
}

fit_lmm <- function(name, cs) {
  cat(sprintf("[%s] %s  (lmer REML)\n", name, cs$f))
  dat <- datasets[[cs$data]]
  fitres <- capture(lmerTest::lmer(as.formula(cs$f), data = dat, REML = TRUE))
  m <- fitres$value
  ll <- logLik(m); theta <- getME(m, "theta")
  tn <- lme4:::tnames(m, old = FALSE, prefix = c("sd", "cor"))
  ct <- coef_table(m)
  list(
    formula = cs$f, data = cs$data, note = cs$note, REML = TRUE, n_obs = nobs(m),
    ngrps = named_list(ngrps(m)), factor_formula_name = factor_name_map(m),
    fixed = ct$table, fixed_statistic = ct$statistic,
    varcorr = varcorr_list(m), sigma = sigma(m),
    theta = named_list(theta), theta_param_names = named_list(setNames(unname(tn), names(theta))),
    reml_criterion = REMLcrit(m), logLik = as.numeric(ll), logLik_df = attr(ll, "df"),
    AIC = AIC(m), BIC = BIC(m), singular = isSingular(m),
    converged_messages = chr(m@optinfo$conv$lme4$messages),
    fit_warnings = I(fitres$warnings), fit_messages = I(fitres$messages),
    ranef = ranef_list(m)
  )
}

dataset_info <- function(nm) {
  d <- datasets[[nm]]
  cols <- lapply(setNames(names(d), names(d)), function(v) {
    x <- d[[v]]
    if (is.factor(x)) {
      lev <- levels(x)
      list(type = if (is.ordered(x)) "ordered" else "factor", n_levels = length(lev),
           levels = if (length(lev) <= 64) I(lev) else NULL,
           first_levels = I(head(lev, 5)), last_level = tail(lev, 1), n_na = sum(is.na(x)))
    } else {
      list(type = storage.mode(x), n_na = sum(is.na(x)), sum = sum(as.numeric(x)))
    }
  })
  list(file = data_files[[nm]], md5 = unname(tools::md5sum(data_paths[[nm]])),
       n = nrow(d), columns = cols)
}

## ------------------------------------------------------------------ run
glmm <- lapply(setNames(names(cases), names(cases)), function(nm) fit_glmm(nm, cases[[nm]]))
lmm <- lapply(setNames(names(gaussian_cases), names(gaussian_cases)), function(nm) fit_lmm(nm, gaussian_cases[[nm]]))

meta <- fixture_meta(
  "tests/r/make_glmer_fixtures.R",
  c("lme4", "lmerTest", "performance", "insight", "Matrix", "MASS", "mlmRev", "nlme", "jsonlite"),
  control = CTRL_TEXT,
  data_check = "each shared CSV, read with the level orders set in the script, equals lme4::cbpp / lme4::grouseticks / lme4::VerbAgg / mlmRev::Contraception (levels, labels, values to 1e-12)",
  simulated = sim_truth,
  conventions = list(
    formula = "as typed in the fit call",
    family = "binomial / poisson / Gamma as R names them; negative_binomial for glmer.nb (family_r is R's 'Negative Binomial(theta)')",
    fixed = "summary(m)$coefficients: estimate, se, z (t for Gamma: fixed_statistic names R's column), p; lmer cases add Satterthwaite df (lmerTest)",
    varcorr = "per lme4 group name: sd per term; cor keyed 'termA,termB' (lower-triangle order) and as cor_records",
    theta = "getME(m, 'theta') (relative Cholesky factor), names as lme4; theta_param_names maps them to tnames(old = FALSE)",
    nb_theta = "getME(m, 'glmer.nb.theta'): NB2 size parameter, var = mu + mu^2 / theta (Bambi's alpha)",
    logLik = "logLik(m) as lme4 reports it; for nAGQ > 1 lme4 leaves out the saturated term, so logLik_full = logLik + loglik_saturated (for nAGQ <= 1 logLik_full = logLik); AIC_full / BIC_full use logLik_full",
    loglik_saturated = "-0.5 * family(m)$aic(y, n, mu = y, prior weights, 0); binomial and Poisson only (null otherwise)",
    restart = "only where lme4 printed a convergence message (not glmer.nb): the fit restarted from its own estimates",
    se_rx = "sqrt(diag(vcov(m, use.hessian = FALSE))): RX-based SEs at fixed theta (lme4's default se uses the finite-difference Hessian)",
    devcomp = "m@devcomp$cmp parts: ldL2 (log det L^2), ldRX2, wrss, ussq (|u|^2), pwrss = wrss + ussq, drsum (= deviance), sigmaML",
    max_abs_gradient = "max |m@optinfo$derivs$gradient| (unscaled) at lme4's final estimates",
    approximations = "Poisson only: lognormal (= performance's default), delta and trigamma distribution variances from the same null-model mu; derived here, performance 0.10.2 does not offer them",
    deviance = "deviance(m): lme4's conditional deviance (sum of squared deviance residuals at the conditional modes, devcomp drsum), NOT -2 logLik; minus2logLik = -2 logLik = summary()'s 'deviance' column",
    objective = "m@devcomp$cmp['dev'], the optimised criterion (= -2 logLik)",
    AIC = "-2 logLik + 2 logLik_df; BIC = -2 logLik + logLik_df * log(n_obs)",
    singular = "isSingular(m) (default tol 1e-4)",
    messages = "converged_messages: m@optinfo$conv$lme4$messages; optimizer_message: bobyqa's ierr code; fit_warnings / fit_messages: conditions raised by the fit call",
    ranef = "ranef(m, condVar = TRUE) via as.data.frame: condval and condsd per term, aligned with levels (all levels)",
    performance = "performance::icc and r2_nakagawa with their default methods (null when NA / error; reason in notes)",
    levels = "per case: number of levels of each grouping factor R saw; datasets.<name>: rows and level lists/counts of every column"
  )
)

out <- list(meta = meta,
            datasets = lapply(setNames(names(datasets), names(datasets)), dataset_info),
            cases = glmm,
            gaussian_cases = lmm)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null", null = "null", pretty = 1), out_json)
cat("wrote", out_json, "\n")
