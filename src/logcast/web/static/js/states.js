// Process states as the server names them, grouped as `ProcessState` groups them
// (tests/test_states.py checks that the two agree).

/** A child process exists in these states. */
export const ALIVE = new Set(["starting", "running", "ready", "stopping"]);
