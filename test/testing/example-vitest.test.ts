// The README's vitest example (examples/testing/vitest.test.ts), run as part of the suite.
import '../../examples/testing/vitest.test.js'
