#!/usr/bin/env bash
# The whole test suite: installs what is missing, then runs jest twice.
#   1. every suite, on the lab's default etcd (Debian bookworm's 3.4.23);
#   2. the end-to-end suites of status, diagnose and every runbook again, on etcd 3.5.30
#      (what Kubernetes ships; lab.sh fetches it from Debian sid into the lab's directory)
#      with the matching etcdctl/etcdutl first in PATH, on a lab formed as kubeadm does
#      (LAB_LAYOUT=kubeadm: node1 bootstrapped alone, node2 and node3 joined `existing`).
#      TEST_LAB_LAYOUT=static runs pass 2 on pass 1's layout instead.
# The suites start what they need themselves (a private Redis on 127.0.0.1:6399, the 3-node
# etcd lab) and stop it afterwards. Arguments go to jest; with a test path among them, only
# pass 1 runs (on LAB_ETCD when set). --outputFile=F writes pass 2's results to F.etcd-<version>.
# TEST_ETCD_MATRIX="3.5.30 3.5.16" picks the versions of pass 2 ("" skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

MATRIX_SUITES=(test/status-e2e.test.ts test/diagnose-e2e.test.ts test/runbook-e2e.test.ts test/restore-e2e.test.ts test/quorum-e2e.test.ts)
paths=0; out=""
for a in "$@"; do
  case $a in
    --outputFile=*) out=${a#--outputFile=} ;;
    -*) ;;
    *) paths=1 ;;
  esac
done

rc=0
npx jest --runInBand "$@" || rc=$?
((paths)) && exit $rc

for v in ${TEST_ETCD_MATRIX-3.5.30}; do
  echo "test.sh: the runbook suites again, on etcd $v, lab formed ${TEST_LAB_LAYOUT:-kubeadm}"
  args=()
  for a in "$@"; do
    case $a in --outputFile=*) args+=("--outputFile=$out.etcd-$v") ;; *) args+=("$a") ;; esac
  done
  LAB_ETCD=$v LAB_LAYOUT=${TEST_LAB_LAYOUT:-kubeadm} npx jest --runInBand "${args[@]}" "${MATRIX_SUITES[@]}" || rc=$?
done
exit $rc
