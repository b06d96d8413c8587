// Viewer preferences kept across visits in localStorage (`logcast.` keys); where storage is
// refused (private mode, full quota) they simply do not persist.

export const prefs = {
  get(key, fallback) {
    try {
      return localStorage.getItem(`logcast.${key}`) ?? fallback;
    } catch {
      return fallback;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(`logcast.${key}`, value);
    } catch {
      // private mode: preferences just do not persist
    }
  },
};
