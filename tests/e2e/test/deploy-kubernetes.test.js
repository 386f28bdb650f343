// deploy/kubernetes/mediamesh.yaml, checked without a Kubernetes cluster (none runs here):
//  - the manifest parses; every Service selects the pods of a workload and names ports
//    those pods declare; every $(VAR) in a container's args is one of its env variables;
//    the secret the pods read is the one the manifest's instructions create; the ports
//    the pods declare are the ones their flags listen on;
//  - the pods' command lines run: gateway-0, gateway-1 and one media node are started
//    with the manifest's own args and env, the downward-API values and the cluster DNS
//    names replaced by loopback addresses (127.0.0.61-63 stand for the pods), and the
//    secret by a test value. The three form one cluster (each lists all three in
//    /api/node), /healthz (the probes' path) answers on every one, both gateways have
//    the media node's load report, and a WHEP offer at either gateway is placed on the
//    media node. The fixed ports of the manifest are used (3000, 3001, 7447, ...).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { MEDIAMESH_BIN, REPO_DIR } from '../lib/server.js';
import { startProcess } from '../lib/proc.js';
import { waitFor } from '../lib/media.js';

const MANIFEST = join(REPO_DIR, 'deploy', 'kubernetes', 'mediamesh.yaml');
const OFFER = readFileSync(join(REPO_DIR, 'crates', 'webrtc', 'tests', 'data', 'chrome-recvonly-offer.sdp'), 'utf8');
const SECRET = 'deploy-test-' + Math.random().toString(36).slice(2);

function load() {
  const text = readFileSync(MANIFEST, 'utf8');
  const docs = parseAllDocuments(text);
  for (const d of docs) assert.deepEqual(d.errors, [], `${MANIFEST}: ${d.errors.join('; ')}`);
  return { text, objects: docs.map((d) => d.toJS()).filter(Boolean) };
}

const matches = (selector, labels) => Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** The command line of `container` with `$(VAR)` expanded from `values` (as the kubelet does). */
function commandLine(container, values) {
  const env = {};
  for (const e of container.env ?? []) {
    if ('value' in e) env[e.name] = e.value;
    else if (e.valueFrom?.fieldRef) env[e.name] = values[e.valueFrom.fieldRef.fieldPath];
    else if (e.valueFrom?.secretKeyRef) env[e.name] = values[`secret:${e.valueFrom.secretKeyRef.name}/${e.valueFrom.secretKeyRef.key}`];
    assert.notEqual(env[e.name], undefined, `${container.name}: no value for env ${e.name} in this test`);
  }
  const args = container.args.map((a) => a.replace(/\$\(([A-Z_][A-Z0-9_]*)\)/g, (_, v) => {
    assert.ok(v in env, `${container.name}: $(${v}) in ${a} is not one of its env variables`);
    return env[v];
  }));
  return { args, env };
}

test('deploy/kubernetes: the manifest is consistent, and its gateway and media pods\' command lines form a cluster that places sessions', { timeout: 60000 }, async () => {
  const { text, objects } = load();
  const by = (kind, name) => objects.find((o) => o.kind === kind && o.metadata.name === name);
  const gateways = by('StatefulSet', 'mediamesh-gateway');
  const media = by('DaemonSet', 'mediamesh-media');
  assert.ok(gateways && media, `${MANIFEST}: a StatefulSet mediamesh-gateway and a DaemonSet mediamesh-media`);
  const workloads = [gateways, media];
  for (const w of workloads) {
    assert.ok(matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels), `${w.metadata.name}: its selector matches its pod labels`);
    for (const c of w.spec.template.spec.containers) {
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.secretKeyRef;
        if (ref) assert.ok(text.includes(`create secret generic ${ref.name}`) && text.includes(`--from-literal=${ref.key}=`), `the instructions create secret ${ref.name} with key ${ref.key}`);
      }
      // Every port a flag listens on is declared (probes and Services name them).
      const declared = new Set((c.ports ?? []).map((p) => `${p.containerPort}/${p.protocol}`));
      for (const a of c.args) {
        const m = a.match(/^--(http|media|rtmp|sip|cluster)-listen=(?:tcp\/)?[^:]+:(\d+)$/);
        if (!m) continue;
        const protos = { http: ['TCP'], media: ['UDP'], rtmp: ['TCP'], sip: ['UDP', 'TCP'], cluster: ['TCP'] }[m[1]];
        for (const p of protos) assert.ok(declared.has(`${m[2]}/${p}`), `${w.metadata.name}: ${a} listens on ${m[2]}/${p}, which its ports do not declare`);
      }
      for (const probe of [c.readinessProbe, c.livenessProbe].filter(Boolean)) {
        assert.ok((c.ports ?? []).some((p) => p.name === probe.httpGet.port), `${w.metadata.name}: probe port ${probe.httpGet.port} is declared`);
      }
    }
  }
  for (const s of objects.filter((o) => o.kind === 'Service')) {
    const w = workloads.find((x) => matches(s.spec.selector, x.spec.template.metadata.labels));
    assert.ok(w, `Service ${s.metadata.name} selects the pods of a workload`);
    const names = new Set(w.spec.template.spec.containers.flatMap((c) => (c.ports ?? []).map((p) => p.name)));
    for (const p of s.spec.ports) assert.ok(names.has(p.targetPort), `Service ${s.metadata.name}: targetPort ${p.targetPort} is a port of ${w.metadata.name}`);
  }
  assert.equal(gateways.spec.serviceName, 'mediamesh-gateway');
  assert.ok(by('Service', 'mediamesh-gateway')?.spec.clusterIP === 'None', 'the gateways\' Service is headless (stable per-pod names)');
  assert.equal(media.spec.template.spec.hostNetwork, true);
  assert.equal(media.spec.template.spec.dnsPolicy, 'ClusterFirstWithHostNet', 'a pod on the host network resolves cluster names');

  // The pods, on loopback addresses. Cluster DNS names of the gateways -> their addresses.
  const ns = gateways.metadata.namespace;
  const pods = [
    { id: 'mediamesh-gateway-0', ip: '127.0.0.61', w: gateways, values: { 'metadata.name': 'mediamesh-gateway-0', 'status.podIP': '127.0.0.61' } },
    { id: 'mediamesh-gateway-1', ip: '127.0.0.62', w: gateways, values: { 'metadata.name': 'mediamesh-gateway-1', 'status.podIP': '127.0.0.62' } },
    { id: 'node-a', ip: '127.0.0.63', w: media, values: { 'spec.nodeName': 'node-a', 'status.hostIP': '127.0.0.63' } },
  ];
  const dns = (a) => a.replace(/mediamesh-gateway-(\d)\.mediamesh-gateway\.([a-z-]+)\.svc\.cluster\.local/g, (_, n, space) => {
    assert.equal(space, ns, `${a}: the gateways' namespace`);
    return pods[Number(n)].ip;
  });
  const procs = [];
  const logs = () => procs.map((p) => p.describe()).join('');
  try {
    for (const p of pods) {
      const [c] = p.w.spec.template.spec.containers;
      const { args, env } = commandLine(c, { ...p.values, 'secret:mediamesh/app-secret': SECRET });
      // Only the manifest's settings: none from this test's environment.
      const clean = Object.fromEntries(Object.keys(process.env).filter((k) => k.startsWith('MEDIAMESH_')).map((k) => [k, '']));
      procs.push(startProcess(MEDIAMESH_BIN, args.map(dns), { label: p.id, env: { ...clean, ...env, RUST_LOG: 'info' } }));
    }
    const api = async (ip, path, init = {}) => fetch(`http://${ip}:3000${path}`, { ...init, signal: AbortSignal.timeout(3000) });
    const node = async (ip) => (await api(ip, '/api/node', { headers: { Authorization: `Bearer ${SECRET}` } })).json().catch(() => null);
    const ids = pods.map((p) => p.id).sort();
    for (const p of pods) {
      await waitFor(`${p.id} to list the three pods`, () => node(p.ip).catch(() => null),
        (v) => JSON.stringify([...(v?.cluster?.nodes ?? [])].sort()) === JSON.stringify(ids), { timeoutMs: 25000, context: async () => logs() });
      const h = await api(p.ip, '/healthz');
      assert.equal(h.status, 200, `${p.id}: /healthz`);
    }
    for (const g of pods.slice(0, 2)) {
      const v = await waitFor(`${g.id} to have the media node's load report`, () => node(g.ip), (x) => x?.loads?.['node-a'], { timeoutMs: 10000, context: async () => logs() });
      assert.equal(v.gateway, true);
      assert.deepEqual(Object.keys(v.loads), ['node-a']);
    }
    const tr = await api(pods[0].ip, '/token/whep', {
      method: 'POST', headers: { Authorization: `Bearer ${SECRET}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ room: 'deploy-test', ttl: 600 }),
    });
    const token = (await tr.json())?.data?.token;
    assert.equal(typeof token, 'string');
    for (const g of pods.slice(0, 2)) {
      const r = await api(g.ip, '/whep/endpoint', { method: 'POST', body: OFFER, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/sdp' } });
      const body = await r.text();
      assert.equal(r.status, 201, `WHEP at ${g.id}: ${body.slice(0, 300)}` + logs());
      const conn = r.headers.get('location').split('/').pop();
      assert.equal(conn.split('.').slice(0, -2).join('.'), 'node-a', `${g.id} placed the session on the media node: ${conn}`);
      assert.match(body, /a=candidate:.* 127\.0\.0\.63 3001 typ host/, 'the answer names the media node\'s own address and media port');
    }
  } finally {
    await Promise.all(procs.map((p) => p.stop('SIGTERM', 5000)));
  }
});
