#!/usr/bin/env Rscript
## Regenerate tests/fixtures/crossed_slopes.csv and tests/fixtures/lme4_crossed.json: lme4 reference
## numbers for crossed random effects with slopes (issue 16, crossed REML on the blocked Cholesky).
## Tests never need R.
##
## Usage (from the repo root):  Rscript tests/r/make_crossed_fixtures.R
## Needs lme4 and jsonlite. Default lmer settings (nloptwrap BOBYQA), REML.

source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))),
              "common.R"))
load_packages(c("lme4", "jsonlite"))
out_dir <- "tests/fixtures"

## 3000 rows, 300 "students" s crossed with 40 "lecturers" d; x varies within both.
set.seed(16)
n <- 3000
s <- sample(300, n, replace = TRUE)
d <- sample(40, n, replace = TRUE)
x <- round(rnorm(n), 3)
us <- matrix(rnorm(300 * 2), 300) %*% diag(c(0.5, 0.3))
C <- matrix(c(0.8^2, 0.3 * 0.8 * 0.4, 0.3 * 0.8 * 0.4, 0.4^2), 2)
ud <- MASS::mvrnorm(40, c(0, 0), C)
y <- round(1 + 0.5 * x + us[s, 1] + us[s, 2] * x + ud[d, 1] + ud[d, 2] * x + rnorm(n), 3)
dat <- data.frame(s = paste0("s", s), d = paste0("d", d), x = x, y = y)
write.csv(dat, file.path(out_dir, "crossed_slopes.csv"), row.names = FALSE, quote = FALSE)
dat <- read.csv(file.path(out_dir, "crossed_slopes.csv"), stringsAsFactors = TRUE)

fit_case <- function(formula) {
  m <- lmer(as.formula(formula), dat, REML = TRUE)
  vc <- as.data.frame(VarCorr(m))
  cf <- summary(m)$coefficients
  list(formula = formula, reml_criterion = unname(REMLcrit(m)), theta = as.list(getME(m, "theta")),
       feval = m@optinfo$feval, singular = isSingular(m), sigma = sigma(m),
       fixed = lapply(setNames(seq_len(nrow(cf)), rownames(cf)),
                      function(i) list(estimate = cf[i, 1], se = cf[i, 2])),
       varcorr = lapply(seq_len(nrow(vc)), function(i) as.list(vc[i, ])))
}
cases <- list(slopes_in_remainder = fit_case("y ~ x + (1 | s) + (x | d)"),
              slopes_in_first = fit_case("y ~ x + (x | s) + (1 | d)"))
out <- list(meta = fixture_meta("tests/r/make_crossed_fixtures.R", c("lme4", "jsonlite")),
            cases = cases)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null"),
           file.path(out_dir, "lme4_crossed.json"))
