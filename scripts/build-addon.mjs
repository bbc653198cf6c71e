#!/usr/bin/env node
/**
 * `npm install` step: builds layerstream's native accelerator (addon/, N-API over the system
 * BLAS) when a C++ toolchain, the Node headers and a BLAS are present, and otherwise prints one
 * line saying what is missing. It never fails the install and never downloads anything: without
 * the addon, layerstream runs on stock tfjs-wasm exactly as before.
 *
 * Environment:
 *   LAYERSTREAM_ACCEL_BUILD=0   skip the build
 *   LAYERSTREAM_BLAS_LIB=path   link this BLAS shared library instead of searching (Linux)
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const addonDir = join(root, 'addon');
const binary = join(addonDir, 'build', 'Release', 'layerstream_blas.node');
const prefix = 'layerstream: native accelerator';
const howTo =
  process.platform === 'darwin'
    ? 'install the Xcode command line tools (xcode-select --install)'
    : 'apt-get install g++ make python3 libopenblas-dev libopenblas-openmp-dev';

function say(line) {
  console.log(`${prefix} ${line}`);
}

function skip(why) {
  say(`not built (${why}); layerstream uses stock tfjs-wasm kernels. For speed: ${howTo}, then \`npm rebuild layerstream\` (in a checkout: \`node scripts/build-addon.mjs\`).`);
  process.exit(0);
}

function runs(cmd, args = ['--version']) {
  const r = spawnSync(cmd, args, { stdio: 'ignore', timeout: 20_000 });
  return r.status === 0;
}

/** Folders where distributions put shared libraries, most specific first. */
function libraryDirs() {
  const arch = { x64: 'x86_64', arm64: 'aarch64', ppc64: 'powerpc64le', s390x: 's390x' }[process.arch];
  const dirs = arch ? [`/usr/lib/${arch}-linux-gnu`] : [];
  dirs.push('/usr/lib64', '/usr/lib', '/usr/local/lib', '/opt/OpenBLAS/lib');
  return dirs;
}

/**
 * The BLAS to link on Linux. The OpenMP build of OpenBLAS comes first: it is the build the
 * accelerator was measured with, and linking its folder as the run path keeps it loaded even
 * where Debian's libopenblas.so.0 alternative points at the pthread build.
 */
function findLinuxBlas() {
  const forced = process.env.LAYERSTREAM_BLAS_LIB;
  if (forced) {
    if (!existsSync(forced)) skip(`LAYERSTREAM_BLAS_LIB=${forced} does not exist`);
    return forced;
  }
  const names = [
    'openblas-openmp/libopenblas.so',
    'openblas-pthread/libopenblas.so',
    'libopenblas.so',
    'openblas-openmp/libopenblas.so.0',
    'openblas-pthread/libopenblas.so.0',
    'libopenblas.so.0',
  ];
  for (const dir of libraryDirs()) {
    for (const name of names) {
      const path = join(dir, name);
      if (existsSync(path)) return path;
    }
  }
  return undefined;
}

/** Node headers that node-gyp can use without downloading them, as a --nodedir value or ''. */
function findNodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const installPrefix = resolve(dirname(process.execPath), '..');
  if (existsSync(join(installPrefix, 'include', 'node', 'node_api.h'))) return installPrefix;
  const cache =
    process.platform === 'darwin'
      ? join(homedir(), 'Library', 'Caches', 'node-gyp')
      : join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'node-gyp');
  if (existsSync(join(cache, process.versions.node, 'include', 'node', 'node_api.h'))) return '';
  return undefined;
}

/** npm's bundled node-gyp: npm names it in the environment of install scripts. */
function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    process.env.npm_execpath && join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  return candidates.find((c) => c && existsSync(c));
}

function main() {
  if (process.env.LAYERSTREAM_ACCEL_BUILD === '0') skip('LAYERSTREAM_ACCEL_BUILD=0');
  if (!['linux', 'darwin'].includes(process.platform)) skip(`no build recipe for ${process.platform}`);

  const cxx = ['c++', 'g++', 'clang++'].find((c) => runs(c));
  if (!cxx) skip('no C++ compiler found');
  if (!runs('make')) skip('make not found');
  if (!runs('python3')) skip('python3 not found, node-gyp needs it');

  const gypArgs = [];
  let blasName = 'Accelerate';
  if (process.platform === 'linux') {
    const lib = findLinuxBlas();
    if (!lib) skip('no OpenBLAS found');
    blasName = lib;
    gypArgs.push(`--blas_lib=${lib}`, `--blas_libdir=${dirname(realpathSync(lib))}`);
  }
  const nodeDir = findNodeDir();
  if (nodeDir === undefined) skip('no Node.js headers found; set npm config nodedir to a folder with include/node');
  if (nodeDir) gypArgs.push(`--nodedir=${nodeDir}`);
  const nodeGyp = findNodeGyp();
  if (!nodeGyp) skip("npm's node-gyp not found");

  const build = spawnSync(process.execPath, [nodeGyp, 'rebuild', ...gypArgs], {
    cwd: addonDir,
    encoding: 'utf8',
    timeout: 300_000,
    env: { ...process.env, CXX: process.env.CXX ?? cxx },
  });
  mkdirSync(join(addonDir, 'build'), { recursive: true });
  const log = join(addonDir, 'build', 'build.log');
  writeFileSync(log, `${build.stdout ?? ''}\n${build.stderr ?? ''}${build.error ? `\n${build.error}` : ''}`);
  if (build.status !== 0) skip(`node-gyp failed, see ${log}`);

  // A binary that links but cannot load (say, a BLAS missing at run time) is reported here,
  // not at the first model run.
  const probe = spawnSync(process.execPath, ['-e', `console.log(JSON.stringify(require(${JSON.stringify(binary)}).info()))`], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (probe.status !== 0) skip(`built but failed to load: ${(probe.stderr ?? '').trim().split('\n')[0]}`);
  const info = JSON.parse(probe.stdout);
  const lapack = info.lapack ? 'with LAPACK' : 'without LAPACK (Cholesky stays in JS)';
  say(`built against ${info.config || blasName} (${info.library || blasName}), ${lapack}.`);
}

main();
