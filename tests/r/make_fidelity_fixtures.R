#!/usr/bin/env Rscript
## Regenerate tests/fixtures/fidelity_*.csv and tests/fixtures/lme4_fidelity.json: lme4 reference
## numbers for issue 19 (formulas and CSVs read as lme4 / read.csv read them). Tests never need R.
##
## Usage (from the repo root):  Rscript tests/r/make_fidelity_fixtures.R
## Needs lme4 and jsonlite (Debian: r-cran-lme4 r-cran-jsonlite). R sorts strings with ICU when
## available (capabilities("ICU")), which is what R on macOS/Windows and most Linux builds use in an
## en_US locale; the `collation` block records R's sort() of a label list under that collator.

source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))),
              "common.R"))
load_packages(c("lme4", "jsonlite"))
out_dir <- "tests/fixtures"

## ------------------------------------------------------------------ data
## Machines-like: 6 workers x 3 machines x 3 replicates, worker-specific machine effects that are
## correlated across machines (so lme4's (Machine || Worker) differs from a diagonal model).
set.seed(19)
workers <- paste0("W", 1:6)
machines <- c("A", "B", "C")
S <- matrix(c(16, 10, 6, 10, 16, 8, 6, 8, 16), 3) / 4
U <- MASS::mvrnorm(length(workers), mu = c(0, 0, 0), Sigma = S)
mach <- expand.grid(rep = 1:3, Machine = machines, Worker = workers, stringsAsFactors = FALSE)
mach$score <- round(50 + c(A = 0, B = 5, C = 2)[mach$Machine] +
                    U[cbind(match(mach$Worker, workers), match(mach$Machine, machines))] +
                    rnorm(nrow(mach), sd = 1), 2)
mach <- mach[, c("Worker", "Machine", "rep", "score")]
write.csv(mach, file.path(out_dir, "fidelity_machines.csv"), row.names = FALSE)

## Alfalfa-like: a factor with a level literally named "None" (read.csv keeps it; only NA and empty
## cells are missing). One response is NA and one is an empty cell: those two rows are dropped.
set.seed(7)
alf <- expand.grid(Date = c("None", "S1", "S20", "O7"), Block = paste0("b", 1:6),
                   stringsAsFactors = FALSE)
alf$Yield <- round(1.6 + c(None = 0, S1 = -0.2, S20 = -0.1, O7 = 0.05)[alf$Date] +
                   rnorm(6, sd = 0.15)[match(alf$Block, paste0("b", 1:6))] +
                   rnorm(nrow(alf), sd = 0.1), 3)
lines <- c("Date,Block,Yield", paste(alf$Date, alf$Block, format(alf$Yield), sep = ","))
lines[3] <- sub(",[^,]*$", ",NA", lines[3])
lines[6] <- sub(",[^,]*$", ",", lines[6])
writeLines(lines, file.path(out_dir, "fidelity_alfalfa.csv"))

## ------------------------------------------------------------------ fits
glance <- function(m) {
  vc <- as.data.frame(VarCorr(m))
  sds <- vc[is.na(vc$var2), ]
  cors <- vc[!is.na(vc$var2), ]
  list(
    formula = deparse1(formula(m)), REML = isREML(m),
    nobs = nobs(m), ngrps = as.list(ngrps(m)),
    reml_criterion = if (isREML(m)) unname(REMLcrit(m)) else NULL,
    deviance = if (isREML(m)) NULL else unname(deviance(m)),
    logLik = as.numeric(logLik(m)), AIC = AIC(m), BIC = BIC(m),
    sigma = sigma(m), theta = as.list(getME(m, "theta")),
    fixed = as.list(fixef(m)),
    se = as.list(sqrt(diag(as.matrix(vcov(m))))),
    varcorr_sd = lapply(split(sds, seq_len(nrow(sds))), function(r)
      list(group = r$grp, term = if (is.na(r$var1)) "" else r$var1, sd = r$sdcor)),
    varcorr_cor = lapply(split(cors, seq_len(nrow(cors))), function(r)
      list(group = r$grp, term1 = r$var1, term2 = r$var2, corr = r$sdcor)),
    singular = isSingular(m)
  )
}
unname_list <- function(x) { names(x) <- NULL; x }

mach <- read.csv(file.path(out_dir, "fidelity_machines.csv"), stringsAsFactors = TRUE)
alf <- read.csv(file.path(out_dir, "fidelity_alfalfa.csv"), stringsAsFactors = TRUE)
fits <- list(
  machines_dblbar = lmer(score ~ Machine + (Machine || Worker), mach, REML = TRUE),
  machines_dblbar_ml = lmer(score ~ Machine + (Machine || Worker), mach, REML = FALSE),
  ## the fully uncorrelated model (afex expand_re / glmmTMB diag()): one variance per column
  machines_diag = lmer(score ~ Machine + (1 | Worker) + (0 + dummy(Machine, "B") | Worker) +
                         (0 + dummy(Machine, "C") | Worker), mach, REML = TRUE),
  machines_corr = lmer(score ~ Machine + (Machine | Worker), mach, REML = TRUE),
  machines_nested = lmer(score ~ Machine + (1 | Worker/Machine), mach, REML = TRUE),
  alfalfa = lmer(Yield ~ Date + (1 | Block), alf, REML = TRUE)
)
cases <- lapply(fits, function(m) {
  g <- glance(m)
  g$varcorr_sd <- unname_list(g$varcorr_sd)
  g$varcorr_cor <- unname_list(g$varcorr_cor)
  g
})

## ------------------------------------------------------------------ collation
labels <- c("b", "B", "a", "A", "chilled", "Nonchilled", "_a", "a_b", "ab", "a b", "a-b", "a.b",
            "10", "9", "1", "Z", "z", "\u00e9", "e", "E", "f", "a1", "A1", "aB", "Ab", "ab2", "ab10",
            "None", "NA2", "x,y", "(x)", "-1", "+1", "O7", "S1", "S20", "low", "Low", "LOW",
            "high", "High", "medium", "r\u00e9sum\u00e9", "resume", "Resume", "co-op", "coop",
            "Co-op", "2nd", "1st", "10th", "#1", "@home", "a'b", "a/b", "a&b", "a~b", "$5", "%x",
            "control", "Control", "treatment A", "treatment a", "treatmentA", "\u00c5ngstr\u00f6m",
            "angstrom", "Zebra", "zebra", "\u00fcber", "uber", "Uber", "stra\u00dfe", "strasse")
ascii <- sapply(32:126, function(i) rawToChar(as.raw(i)))

out <- list(
  meta = list(R_version = R.version.string, lme4 = as.character(packageVersion("lme4")),
              icu = capabilities("ICU")[[1]], collator = icuGetCollate(),
              date = format(Sys.Date())),
  cases = cases,
  alfalfa_levels = levels(alf$Date),
  ## lme4's labels and conditional modes of the inner factor of (1 | Worker/Machine)
  nested_ranef_head = local({
    re <- ranef(fits$machines_nested)[["Machine:Worker"]]
    list(levels = head(rownames(re), 6), condval = head(re[["(Intercept)"]], 6))
  }),
  alfalfa_nobs_used = nobs(fits$alfalfa),
  collation = list(input = labels, sorted = sort(labels), ascii_sorted = sort(ascii))
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", pretty = TRUE),
           file.path(out_dir, "lme4_fidelity.json"))
cat("wrote", file.path(out_dir, "lme4_fidelity.json"), "\n")
