// The mark on statements Tidepool runs for itself (lock_timeout around row locks, the advisor's
// probe), so the observer can keep them out of the application's statement statistics.
export const INTERNAL_MARKER = '/* tidepool */ '
