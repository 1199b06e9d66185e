#!/usr/bin/env node
// Prints vitest's totals as one plain closing line ("tests: N passed, N failed,
// N skipped"), from the JSON report `make test` writes, so that CI reads the
// counts without knowing vitest's own format. Exits 1 when no test ran.
import { readFileSync } from 'node:fs';

const report = JSON.parse(readFileSync(process.argv[2] ?? 'test/.artifacts/vitest.json', 'utf8'));
const passed = report.numPassedTests ?? 0;
const failed = report.numFailedTests ?? 0;
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
if (passed + failed === 0) process.exit(1);
