## Shared header of the fixture scripts (sourced, never run alone): quiet package loading and
## the command-line arguments `[DATA_DIR] [OUT_JSON] [--flag ...]` every script takes.

## Attach `pkgs` in order, without their start-up messages.
load_packages <- function(pkgs) {
  suppressPackageStartupMessages(for (p in pkgs) library(p, character.only = TRUE))
}

## The trailing arguments: `data_dir` (default ../shared/data, relative to the repo root),
## `out_json` (default `default_json`), which of `flags` were given, and the raw arguments.
fixture_args <- function(default_json, flags = character()) {
  raw <- commandArgs(trailingOnly = TRUE)
  pos <- setdiff(raw, flags)
  list(data_dir = if (length(pos) >= 1) pos[[1]] else "../shared/data",
       out_json = if (length(pos) >= 2) pos[[2]] else default_json,
       flags = intersect(flags, raw), raw = raw)
}

## `list(pkg = "version", ...)` in the order given: the versions a fixture's meta block records.
package_versions <- function(pkgs) {
  setNames(lapply(pkgs, function(p) as.character(packageVersion(p))), pkgs)
}

## The opening of a fixture's meta block (script, R and package versions, platform), then `...`.
fixture_meta <- function(script, pkgs, ...) {
  c(list(generated_by = script, R_version = R.version.string, packages = package_versions(pkgs),
         platform = R.version$platform), list(...))
}
