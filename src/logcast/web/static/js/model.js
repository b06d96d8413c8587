// The line model in one import (entries, the single-process model, the merged model), for
// code that loads it by this path (tests/e2e/test_dashboard_units.py); pages import the parts.

export * from "./entries.js";
export { LogModel } from "./log-model.js";
export { MergedModel } from "./merged-model.js";
