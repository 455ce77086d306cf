#!/usr/bin/env Rscript
## Regenerate tests/fixtures/lme4_reference.json: lme4 / lmerTest / performance
## reference numbers for the bayes_hlm test-suite (tests never need R).
##
## Usage (from the repo root):
##   Rscript tests/r/make_lme4_fixtures.R [DATA_DIR] [OUT_JSON] [--no-timing]
## DATA_DIR defaults to ../shared/data (relative to the repo root),
## OUT_JSON defaults to tests/fixtures/lme4_reference.json.

source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))),
              "common.R"))
load_packages(c("lme4", "lmerTest", "performance", "jsonlite"))
opts <- fixture_args("tests/fixtures/lme4_reference.json", flags = "--no-timing")
no_timing <- "--no-timing" %in% opts$flags
data_dir <- opts$data_dir
out_json <- opts$out_json
N_TIMING <- 3L

## ------------------------------------------------------------------ data
rd <- function(f, ...) read.csv(file.path(data_dir, f), stringsAsFactors = FALSE, ...)

sleep <- rd("sleepstudy.csv", colClasses = c(Subject = "character"))
sleep$Subject <- factor(sleep$Subject, levels = as.character(sort(unique(as.integer(sleep$Subject)))))
## Three-level toy structure: 3 "schools" of 6 subjects each, in the data's row order.
sleep$School <- factor(rep(1:3, each = 60))

hsb <- rd("hsb82.csv", colClasses = c(school = "character"))
## mlmRev's Hsb82$school is an ordered factor with a non-numeric level order; the level
## order is immaterial for the fit, we use order of appearance (an unordered factor).
hsb$school <- factor(hsb$school, levels = unique(hsb$school))
hsb$minrty <- factor(hsb$minrty, levels = c("No", "Yes"))
hsb$sx <- factor(hsb$sx, levels = c("Male", "Female"))
hsb$sector <- factor(hsb$sector, levels = c("Public", "Catholic"))

pen <- rd("penicillin.csv")
pen$plate <- factor(pen$plate, levels = letters[1:24])
pen$sample <- factor(pen$sample, levels = LETTERS[1:6])

ie <- rd("insteval.csv", colClasses = c(s = "character", d = "character", studage = "character",
                                        lectage = "character", service = "character", dept = "character"))
## Level orders as in lme4::InstEval (s, d numeric; dept in lme4's own order).
ie$s <- factor(ie$s, levels = as.character(sort(unique(as.integer(ie$s)))))
ie$d <- factor(ie$d, levels = as.character(sort(unique(as.integer(ie$d)))))
ie$dept <- factor(ie$dept, levels = c("15", "5", "10", "12", "6", "7", "4", "8", "9", "14", "1", "3", "11", "2"))
ie$service <- factor(ie$service, levels = c("0", "1"))
ie$studage <- factor(ie$studage, levels = c("2", "4", "6", "8"), ordered = TRUE)
ie$lectage <- factor(ie$lectage, levels = as.character(1:6), ordered = TRUE)

datasets <- list(sleepstudy = sleep, hsb82 = hsb, penicillin = pen, insteval = ie)

## ------------------------------------------------------------------ cases
cases <- list(
  sleep_ri          = list(f = "Reaction ~ Days + (1|Subject)", data = "sleepstudy", REML = TRUE),
  sleep_rs          = list(f = "Reaction ~ Days + (Days|Subject)", data = "sleepstudy", REML = TRUE),
  sleep_uncorr      = list(f = "Reaction ~ Days + (Days||Subject)", data = "sleepstudy", REML = TRUE),
  sleep_3level      = list(f = "Reaction ~ Days + (1|School) + (1|Subject:School)", data = "sleepstudy", REML = TRUE),
  sleep_3level_slope = list(f = "Reaction ~ Days + (Days|School) + (1|Subject:School)", data = "sleepstudy", REML = TRUE),
  hsb_null          = list(f = "mAch ~ 1 + (1|school)", data = "hsb82", REML = TRUE),
  hsb_ses           = list(f = "mAch ~ ses + (1|school)", data = "hsb82", REML = TRUE),
  hsb_full          = list(f = "mAch ~ cses + meanses + sector + (cses|school)", data = "hsb82", REML = TRUE),
  hsb_cross         = list(f = "mAch ~ cses * sector + meanses + (cses|school)", data = "hsb82", REML = TRUE),
  penicillin        = list(f = "diameter ~ 1 + (1|plate) + (1|sample)", data = "penicillin", REML = TRUE),
  insteval          = list(f = "y ~ service + (1|s) + (1|d) + (1|dept)", data = "insteval", REML = TRUE,
                           ranef_max_levels = 20L),
  sleep_ri_ml       = list(f = "Reaction ~ Days + (1|Subject)", data = "sleepstudy", REML = FALSE),
  sleep_rs_ml       = list(f = "Reaction ~ Days + (Days|Subject)", data = "sleepstudy", REML = FALSE)
)
profile_cases <- c("sleep_ri", "sleep_rs")

## ------------------------------------------------------------------ helpers
named_list <- function(x) { out <- as.list(unname(x)); names(out) <- names(x); out }
num <- function(x) if (is.null(x) || length(x) == 0) NA_real_ else as.numeric(x)

## Run expr, collecting warnings and messages instead of printing them.
capture <- function(expr) {
  w <- character(); msg <- character()
  val <- withCallingHandlers(expr,
    warning = function(c) { w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning") },
    message = function(c) { msg <<- c(msg, conditionMessage(c)); invokeRestart("muffleMessage") })
  list(value = val, warnings = w, messages = msg)
}

## Map from the groups named by the formula's bars to lme4's (VarCorr) group names.
## lme4 renames repeated grouping factors ((Days||Subject) -> "Subject", "Subject.1").
factor_name_map <- function(m) {
  cnms <- getME(m, "cnms")      # names = group names as in VarCorr/theta (possibly ".1" suffixed)
  flist_names <- names(getME(m, "flist"))
  asgn <- attr(getME(m, "flist"), "assign")
  vc_names <- names(VarCorr(m))
  out <- list()
  for (i in seq_along(cnms)) out[[vc_names[i]]] <- flist_names[asgn[i]]
  out
}

coef_table <- function(m) {
  cf <- summary(m)$coefficients
  res <- list()
  for (i in seq_len(nrow(cf))) {
    res[[rownames(cf)[i]]] <- list(estimate = cf[i, "Estimate"], se = cf[i, "Std. Error"],
                                   df = cf[i, "df"], t = cf[i, "t value"], p = cf[i, "Pr(>|t|)"])
  }
  res
}

varcorr_list <- function(m) {
  vc <- as.data.frame(VarCorr(m), order = "lower.tri")
  res <- list()
  for (g in unique(vc$grp)) {
    if (g == "Residual") next
    sub <- vc[vc$grp == g, ]
    sds <- sub[is.na(sub$var2), ]
    cors <- sub[!is.na(sub$var2), ]
    res[[g]] <- list(
      sd = named_list(setNames(sds$sdcor, sds$var1)),
      var = named_list(setNames(sds$vcov, sds$var1)),
      cor = if (nrow(cors)) named_list(setNames(cors$sdcor, paste(cors$var1, cors$var2, sep = ","))) else setNames(list(), character()),
      cov = if (nrow(cors)) named_list(setNames(cors$vcov, paste(cors$var1, cors$var2, sep = ","))) else setNames(list(), character())
    )
  }
  res$Residual <- list(sd = sigma(m), var = sigma(m)^2)
  res
}

ranef_list <- function(m, max_levels = NULL) {
  re <- ranef(m, condVar = TRUE)
  df <- as.data.frame(re)
  res <- list()
  for (g in names(re)) {
    lev <- rownames(re[[g]])
    if (!is.null(max_levels)) lev <- head(lev, max_levels)
    sub <- df[df$grpvar == g & as.character(df$grp) %in% lev, ]
    terms <- colnames(re[[g]])
    res[[g]] <- list(
      n_levels = nrow(re[[g]]),
      levels = I(lev),
      terms = I(terms),
      condval = lapply(setNames(terms, terms), function(t) {
        s <- sub[sub$term == t, ]; I(unname(s$condval[match(lev, as.character(s$grp))])) }),
      condsd = lapply(setNames(terms, terms), function(t) {
        s <- sub[sub$term == t, ]; I(unname(s$condsd[match(lev, as.character(s$grp))])) })
    )
  }
  res
}

ci_list <- function(ci) {
  res <- list()
  for (i in seq_len(nrow(ci))) res[[rownames(ci)[i]]] <- list(lower = ci[i, 1], upper = ci[i, 2])
  res
}

perf_list <- function(m, time_limit = 60) {
  one <- function(fun) {
    t0 <- proc.time()[["elapsed"]]
    r <- tryCatch({
      setTimeLimit(elapsed = time_limit, transient = TRUE)
      on.exit(setTimeLimit(elapsed = Inf), add = TRUE)
      capture(fun(m))
    }, error = function(e) list(value = NULL, warnings = character(), messages = character(), error = conditionMessage(e)))
    r$elapsed_s <- proc.time()[["elapsed"]] - t0
    r
  }
  ic <- one(function(x) performance::icc(x))
  r2 <- one(function(x) performance::r2_nakagawa(x))
  icv <- ic$value; r2v <- r2$value
  ## performance returns a bare NA (with a printed note) for e.g. singular fits
  if (!is.list(icv)) icv <- NULL
  if (!is.list(r2v)) r2v <- NULL
  list(
    icc_adjusted = if (is.null(icv)) NA_real_ else num(icv$ICC_adjusted),
    icc_unadjusted = if (is.null(icv)) NA_real_ else num(icv$ICC_unadjusted),
    r2_marginal = if (is.null(r2v)) NA_real_ else num(r2v$R2_marginal),
    r2_conditional = if (is.null(r2v)) NA_real_ else num(r2v$R2_conditional),
    notes = I(c(character(),
              if (is.null(icv) && is.null(ic$error)) "icc returned NA",
              if (is.null(r2v) && is.null(r2$error)) "r2_nakagawa returned NA",
              if (!is.null(ic$error)) paste("icc error:", ic$error),
              if (length(ic$warnings)) paste("icc warning:", ic$warnings),
              if (length(ic$messages)) paste("icc message:", trimws(ic$messages)),
              if (!is.null(r2$error)) paste("r2_nakagawa error:", r2$error),
              if (length(r2$warnings)) paste("r2_nakagawa warning:", r2$warnings),
              if (length(r2$messages)) paste("r2_nakagawa message:", trimws(r2$messages)))),
    elapsed_s = list(icc = ic$elapsed_s, r2_nakagawa = r2$elapsed_s)
  )
}

time_fit <- function(fun, n = N_TIMING) {
  if (no_timing) return(NULL)
  tt <- vapply(seq_len(n), function(i) {
    gc(FALSE)
    suppressWarnings(suppressMessages(system.time(fun())[["elapsed"]]))
  }, numeric(1))
  list(median = median(tt), runs = tt)
}

fit_case <- function(name, cs) {
  cat(sprintf("[%s] %s  (REML=%s)\n", name, cs$f, cs$REML))
  dat <- datasets[[cs$data]]
  form <- as.formula(cs$f)
  fitres <- capture(lmerTest::lmer(form, data = dat, REML = cs$REML))
  m <- fitres$value
  conv <- m@optinfo$conv$lme4$messages
  theta <- getME(m, "theta")
  ll <- logLik(m)
  tn_new <- lme4:::tnames(m, old = FALSE, prefix = c("sd", "cor"))

  out <- list(
    formula = cs$f,
    data = cs$data,
    REML = cs$REML,
    n_obs = nobs(m),
    ngrps = named_list(ngrps(m)),
    factor_formula_name = factor_name_map(m),
    fixed = coef_table(m),
    vcov_fixed = lapply(split(as.matrix(vcov(m)), seq_len(nrow(vcov(m)))), function(r) I(unname(r))) |>
      setNames(rownames(vcov(m))),
    varcorr = varcorr_list(m),
    sigma = sigma(m),
    theta = named_list(theta),
    theta_param_names = named_list(setNames(unname(tn_new), names(theta))),
    reml_criterion = if (isREML(m)) REMLcrit(m) else NA_real_,
    deviance_ml = if (isREML(m)) NA_real_ else deviance(m),
    objective = as.numeric(m@devcomp$cmp[[if (isREML(m)) "REML" else "dev"]]),
    logLik = as.numeric(ll),
    logLik_df = attr(ll, "df"),
    AIC = AIC(m),
    BIC = BIC(m),
    singular = isSingular(m),
    convergence_messages = I(as.character(conv)),
    fit_warnings = I(fitres$warnings),
    fit_messages = I(trimws(fitres$messages)),
    optimizer = m@optinfo$optimizer,
    ranef = ranef_list(m, cs$ranef_max_levels),
    fitted_head = unname(head(fitted(m), 10)),
    residuals_head = unname(head(residuals(m), 10))
  )
  if (!is.null(cs$ranef_max_levels)) out$ranef_note <- sprintf("only the first %d levels (R level order) of each factor", cs$ranef_max_levels)

  out$performance <- perf_list(m)
  out$confint_wald <- ci_list(confint(m, method = "Wald", parm = "beta_"))

  if (name %in% profile_cases) {
    pr <- capture(confint(m, method = "profile", oldNames = TRUE))
    out$confint_profile <- ci_list(pr$value)
    ## profile rows .sig01, .sig02, ... follow theta order (lower triangle, column-major, per factor)
    out$confint_profile_names <- named_list(setNames(c(unname(tn_new), "sigma"),
                                                     c(sprintf(".sig%02d", seq_along(theta)), ".sigma")))
    out$confint_profile_warnings <- I(pr$warnings)
  }

  fit_lme4 <- function() lme4::lmer(form, data = dat, REML = cs$REML)
  fit_lmerTest <- function() lmerTest::lmer(form, data = dat, REML = cs$REML)
  t1 <- time_fit(fit_lme4)
  out$timing_s <- if (is.null(t1)) NA_real_ else t1$median
  out$timing_runs_s <- if (is.null(t1)) NULL else t1$runs
  t2 <- time_fit(fit_lmerTest)
  out$timing_lmerTest_s <- if (is.null(t2)) NA_real_ else t2$median
  cat(sprintf("    crit=%.6f  singular=%s  lme4 time=%s s  lmerTest time=%s s\n",
              out$objective, out$singular, format(out$timing_s), format(out$timing_lmerTest_s)))
  list(model = m, json = out)
}

## ------------------------------------------------------------------ run
results <- list(); models <- list()
for (nm in names(cases)) {
  r <- fit_case(nm, cases[[nm]])
  results[[nm]] <- r$json
  models[[nm]] <- r$model
}

## anova(sleep_ri, sleep_rs): refit with ML
av <- capture(anova(models$sleep_ri, models$sleep_rs, refit = TRUE))$value
av_rows <- list()
for (i in seq_len(nrow(av))) {
  av_rows[[rownames(av)[i]]] <- list(
    npar = av[i, "npar"], AIC = av[i, "AIC"], BIC = av[i, "BIC"], logLik = av[i, "logLik"],
    deviance = av[i, "deviance"], Chisq = num(av[i, "Chisq"]), Df = num(av[i, "Df"]),
    p = num(av[i, "Pr(>Chisq)"]))
}
anova_sleep <- list(models = c(sleep_ri = "Reaction ~ Days + (1|Subject)", sleep_rs = "Reaction ~ Days + (Days|Subject)"),
                    refit_ML = TRUE, table = av_rows,
                    Chisq = num(av[2, "Chisq"]), Df = num(av[2, "Df"]), p = num(av[2, "Pr(>Chisq)"]))
anova_sleep$models <- as.list(anova_sleep$models)
names(anova_sleep$table) <- c("sleep_ri", "sleep_rs")

## lmerTest::ranova(sleep_rs)
rv <- lmerTest::ranova(models$sleep_rs)
rv_rows <- list()
for (i in seq_len(nrow(rv))) {
  rv_rows[[rownames(rv)[i]]] <- list(npar = rv[i, "npar"], logLik = rv[i, "logLik"], AIC = rv[i, "AIC"],
                                     LRT = num(rv[i, "LRT"]), Df = num(rv[i, "Df"]), p = num(rv[i, "Pr(>Chisq)"]))
}
ranova_sleep_rs <- list(model = "sleep_rs", REML = TRUE, table = rv_rows)

## Complete / no pooling and per-subject OLS on sleepstudy
lm_info <- function(fit) {
  s <- summary(fit); cf <- s$coefficients
  list(formula = deparse(formula(fit)),
       r_squared = s$r.squared, adj_r_squared = s$adj.r.squared, sigma = s$sigma,
       df_residual = fit$df.residual,
       coefficients = lapply(setNames(seq_len(nrow(cf)), rownames(cf)), function(i)
         list(estimate = cf[i, 1], se = cf[i, 2], t = cf[i, 3], p = cf[i, 4])),
       logLik = as.numeric(logLik(fit)), AIC = AIC(fit), BIC = BIC(fit))
}
lm_pooled <- lm_info(lm(Reaction ~ Days, data = sleep))
lm_nopool <- lm_info(lm(Reaction ~ Days + Subject, data = sleep))
lm_nopool$note <- "treatment contrasts, reference Subject 308"
lm_inter <- lm(Reaction ~ Days * Subject, data = sleep)
subj <- levels(sleep$Subject)
per <- lapply(subj, function(s) {
  f <- lm(Reaction ~ Days, data = sleep[sleep$Subject == s, ])
  cf <- summary(f)$coefficients
  list(intercept = cf[1, 1], slope = cf[2, 1], se_intercept = cf[1, 2], se_slope = cf[2, 2],
       sigma = summary(f)$sigma, n = nobs(f))
})
names(per) <- subj
lm_per_subject <- list(
  note = "separate lm(Reaction ~ Days) per Subject; identical point estimates to lm(Reaction ~ Days * Subject)",
  subjects = subj,
  intercept = unname(vapply(per, `[[`, 0, "intercept")),
  slope = unname(vapply(per, `[[`, 0, "slope")),
  se_intercept = unname(vapply(per, `[[`, 0, "se_intercept")),
  se_slope = unname(vapply(per, `[[`, 0, "se_slope")),
  sigma = unname(vapply(per, `[[`, 0, "sigma")),
  interaction_model = list(formula = "Reaction ~ Days * Subject", r_squared = summary(lm_inter)$r.squared,
                           sigma = summary(lm_inter)$sigma, df_residual = lm_inter$df.residual)
)

meta <- fixture_meta(
  "tests/r/make_lme4_fixtures.R",
  c("lme4", "lmerTest", "performance", "Matrix", "jsonlite", "insight"),
  generated_at = format(Sys.time(), "%Y-%m-%dT%H:%M:%S%z"),
  blas = tryCatch(extSoftVersion()[["BLAS"]], error = function(e) NA_character_),
  data_dir = normalizePath(data_dir),
  timing = list(n_runs = N_TIMING, statistic = "median of system.time(lme4::lmer(...))['elapsed'] (data loaded); timing_lmerTest_s uses lmerTest::lmer",
                machine_note = "shared 2-core machine; timings are indicative only"),
  conventions = list(
    fixed = "lmerTest summary(m)$coefficients; df = Satterthwaite",
    varcorr = "per lme4 group name: sd/var per term, cor/cov keyed 'termA,termB' (lower triangle order); Residual = sigma",
    theta = "getME(m,'theta'), names as lme4; theta_param_names maps them to tnames(old=FALSE)",
    factor_formula_name = "lme4 group name (VarCorr/theta/ranef) -> grouping factor in the formula; differs for (x||g) where lme4 uses g, g.1",
    ranef = "ranef(m, condVar=TRUE) via as.data.frame: condval and condsd per term, listed in 'levels' order",
    reml_criterion = "REMLcrit(m) for REML fits (NA for ML); deviance_ml = deviance(m) for ML fits; objective = the optimised criterion",
    confint_profile = "confint(m, method='profile', oldNames=TRUE); confint_profile_names maps .sigNN -> sd_/cor_ names",
    levels = "factor levels as in /work/shared/data/README.md (reference levels of R)",
    missing = "null = NA"
  )
)

out <- c(list(meta = meta), list(cases = results),
         list(anova_sleep = anova_sleep, ranova_sleep_rs = ranova_sleep_rs,
              lm_pooled = lm_pooled, lm_nopool = lm_nopool, lm_per_subject = lm_per_subject))

dir.create(dirname(out_json), showWarnings = FALSE, recursive = TRUE)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null", null = "null", pretty = 1), out_json)
cat("wrote", out_json, "\n")
