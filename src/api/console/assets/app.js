// The minifargate web console (docs/console.md): one page, routed by the URL's fragment.
// Everything it shows comes from the ECS operations (POST /console/api/ecs/<Operation>,
// the API's own dispatcher) and the few views ECS has none for (/console/api/tasks/...).
// Live: the current page polls every 2 s (why polling and not SSE: docs/console.md).
// No library, no inline script, nothing from another origin (the page's CSP forbids it).
'use strict';
(function () {
  const POLL_MS = 2000;
  const SVG = 'http://www.w3.org/2000/svg';
  const DOC = '/assets/how-isolation-works.md';
  const state = { readOnly: true, refresh: null, busy: false, seq: 0 };

  // ---- DOM helpers: text always goes in as text (task output is not trusted) ----
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    return fill(el, attrs, kids);
  }
  function sv(tag, attrs, ...kids) {
    const el = document.createElementNS(SVG, tag);
    return fill(el, attrs, kids);
  }
  function fill(el, attrs, kids) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  const $ = (sel, el) => (el || document).querySelector(sel);
  // A view refreshed every POLL_MS: its children are replaced only when what they show
  // changed, so the link, row or text a user is on (focus, selection, a click on its
  // way) is not swapped from under them every two seconds. Views with listeners of their
  // own are replaced with replaceChildren.
  function update(el, ...kids) {
    const next = fill(document.createElement('div'), null, kids);
    if (next.innerHTML === el.innerHTML) return;
    el.replaceChildren(...next.childNodes);
  }
  function table(headers, rows, attrs) {
    return h('div', { class: 'table-wrap' }, h('table', attrs || {},
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows)));
  }
  function status(s, id) {
    return h('span', { class: 'status s-' + (s || 'UNKNOWN'), id: id }, s || '-');
  }
  function errorBox() { return h('p', { class: 'error', role: 'alert' }); }
  function showError(box, e) { if (box) box.textContent = e ? String(e.message || e) : ''; }

  // ---- Formatting ----
  const pad = (n) => String(n).padStart(2, '0');
  function time(v) {
    if (v === null || v === undefined || v === '') return '-';
    const d = typeof v === 'number' ? new Date(v * 1000) : new Date(v);
    if (isNaN(d)) return String(v);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
      pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }
  function secs(us) {
    if (us === null || us === undefined) return '-';
    if (Math.abs(us) < 1e6) return (us / 1000).toFixed(Math.abs(us) < 1e4 ? 1 : 0) + ' ms';
    return (us / 1e6).toFixed(us < 1e7 ? 2 : 1) + ' s';
  }
  function mib(bytes) { return (bytes / 1048576).toFixed(1) + ' MiB'; }
  const lastPart = (arn) => String(arn || '').split('/').pop();
  const tdName = (arn) => String(arn || '').split('/').pop();
  const clusterOf = (arn) => { const p = String(arn || '').split('/'); return p.length > 2 ? p[1] : 'default'; };

  // ---- Server calls ----
  async function ecs(op, body) {
    return post('/console/api/ecs/' + op, body);
  }
  // CloudWatch (AWS JSON 1.0) and Application Auto Scaling reads, as their APIs answer.
  async function cw(op, body) {
    return post('/console/api/cloudwatch/' + op, body);
  }
  async function aas(op, body) {
    return post('/console/api/application-autoscaling/' + op, body);
  }
  // Cloud Map (AWS JSON 1.1) reads, as its API answers them.
  async function sd(op, body) {
    return post('/console/api/servicediscovery/' + op, body);
  }
  async function post(path, body) {
    const op = lastPart(path);
    const r = await fetch(path, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body || {}),
    });
    const j = await r.json().catch(() => ({}));
    // (Cloud Map's errors are `{"__type", "Message"}`.)
    if (!r.ok) throw new Error(j.message || (j.Message ? op + ': ' + (j.__type ? String(j.__type).split('#').pop() + ': ' : '') + j.Message : op + ': HTTP ' + r.status));
    return j;
  }
  async function get(path) {
    const r = await fetch(path);
    const j = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(j.message || (path + ': HTTP ' + r.status));
    return j;
  }
  async function listAll(op, body, key) {
    let out = [], token;
    do {
      const r = await ecs(op, Object.assign({}, body, token ? { nextToken: token } : {}));
      out = out.concat(r[key] || []);
      token = r.nextToken;
    } while (token);
    return out;
  }
  async function chunked(items, size, f) {
    let out = [];
    for (let i = 0; i < items.length; i += size) out = out.concat(await f(items.slice(i, i + size)));
    return out;
  }
  // ELBv2 reads (POST /console/api/elbv2/<Action>, the API's own dispatch): awsQuery's XML,
  // read with the browser's DOMParser into plain objects (a list is its <member>s).
  function xmlValue(el) {
    const kids = Array.from(el.children);
    if (!kids.length) return el.textContent;
    if (kids.every((k) => k.localName === 'member')) return kids.map(xmlValue);
    const o = {};
    for (const k of kids) o[k.localName] = xmlValue(k);
    return o;
  }
  const list = (v) => (Array.isArray(v) ? v : []);
  async function elb(action, members) {
    const r = await fetch('/console/api/elbv2/' + action, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(members || {}),
    });
    const text = await r.text();
    const x = new DOMParser().parseFromString(text, 'application/xml');
    if (!r.ok) {
      let msg = action + ': HTTP ' + r.status;
      try { msg = JSON.parse(text).message || msg; } catch (_) {
        const m = x.getElementsByTagName('Message')[0];
        if (m) msg = m.textContent;
      }
      throw new Error(msg);
    }
    const result = x.getElementsByTagName(action + 'Result')[0];
    return result ? xmlValue(result) : {};
  }
  async function elbAll(action, members, key) {
    let out = [], marker;
    do {
      const r = await elb(action, Object.assign({}, members, marker ? { Marker: marker } : {}));
      out = out.concat(list(r[key]));
      marker = r.NextMarker;
    } while (marker);
    return out;
  }
  async function clusterNames() {
    return (await listAll('ListClusters', {}, 'clusterArns')).map(lastPart);
  }
  async function describeTasks(cluster, arns) {
    return chunked(arns, 100, async (part) => (await ecs('DescribeTasks', { cluster, tasks: part })).tasks || []);
  }

  // ---- Router ----
  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, '');
    const [path, q] = raw.split('?');
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    return { parts, query: new URLSearchParams(q || '') };
  }
  const pages = {
    clusters: clustersPage, services: servicesPage, service: servicePage, tasks: tasksPage,
    task: taskPage, taskdefs: taskdefsPage, taskdef: taskdefPage, instances: instancesPage,
    loadbalancers: loadBalancersPage, repositories: repositoriesPage,
  };
  async function route() {
    const { parts, query } = parseHash();
    const name = pages[parts[0]] ? parts[0] : 'clusters';
    const seq = ++state.seq;
    state.refresh = null;
    const main = $('#main');
    main.replaceChildren();
    for (const a of document.querySelectorAll('nav a')) {
      const on = a.dataset.nav === name || (a.dataset.nav + 's') === name ||
        a.dataset.nav === name + 's';
      a.classList.toggle('active', on);
      if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    const refresh = pages[name](main, parts.slice(1), query);
    if (seq !== state.seq) return;
    state.refresh = refresh;
    tick();
  }
  async function tick() {
    if (!state.refresh || state.busy || document.hidden) return;
    const seq = state.seq, f = state.refresh;
    state.busy = true;
    try { await f(() => seq === state.seq); } catch (e) { /* each page shows its own errors */ }
    state.busy = false;
  }

  // ---- Clusters ----
  function clustersPage(main) {
    const cards = h('div', { class: 'cards', id: 'clusters' }), err = errorBox();
    main.append(h('h1', {}, 'Clusters'), err, cards);
    return async (current) => {
      try {
        const names = await clusterNames();
        const d = await chunked(names, 100, async (part) => (await ecs('DescribeClusters', { clusters: part })).clusters || []);
        const stopped = {};
        for (const c of d) {
          stopped[c.clusterName] = (await listAll('ListTasks', { cluster: c.clusterName, desiredStatus: 'STOPPED' }, 'taskArns')).length;
        }
        if (!current()) return;
        showError(err);
        update(cards, ...d.map((c) => h('section', { class: 'card', 'data-cluster': c.clusterName },
          h('h2', {}, h('a', { href: '#/tasks?cluster=' + encodeURIComponent(c.clusterName) }, c.clusterName), ' ', status(c.status)),
          h('div', { class: 'counts' },
            h('span', {}, h('b', { class: 's-RUNNING' }, c.runningTasksCount), 'running'),
            h('span', {}, h('b', { class: 's-PENDING' }, c.pendingTasksCount), 'pending'),
            h('span', {}, h('b', { class: 's-STOPPED' }, stopped[c.clusterName]), 'stopped'),
            h('span', {}, h('b', {}, h('a', { href: '#/services?cluster=' + encodeURIComponent(c.clusterName) }, c.activeServicesCount)), 'services')))),
          d.length ? null : h('p', { class: 'muted' }, 'No clusters yet: run a task and the default cluster appears.'));
      } catch (e) { showError(err, e); }
    };
  }

  // ---- Container instances ----
  function resourceOf(list, name) {
    const r = (list || []).find((x) => x.name === name);
    return r ? r.integerValue : undefined;
  }
  function instancesPage(main, parts, query) {
    const only = parts[0] || query.get('cluster') || '';
    const err = errorBox(), body = h('div', { id: 'instances' }, h('p', { class: 'muted' }, 'Loading…'));
    main.append(h('h1', {}, 'Container instances', only ? ' in ' + only : ''),
      h('p', { class: 'explain' }, 'ListContainerInstances and DescribeContainerInstances: with serve --cluster, the boxes whose agents joined the cluster (docs/cluster.md); on one box, this box. Remaining is registered minus what the tasks placed there reserve.'),
      err, body);
    return async (current) => {
      try {
        const clusters = only ? [only] : await clusterNames();
        const found = [];
        for (const cluster of clusters) {
          const arns = await listAll('ListContainerInstances', { cluster }, 'containerInstanceArns');
          const cis = await chunked(arns, 100, async (part) =>
            (await ecs('DescribeContainerInstances', { cluster, containerInstances: part })).containerInstances || []);
          found.push([cluster, cis]);
        }
        if (!current()) return;
        showError(err);
        if (!found.length) update(body, h('p', { class: 'muted' }, 'No clusters yet: run a task and the default cluster appears.'));
        else update(body, ...found.map(([cluster, cis]) => h('section', { 'data-cluster': cluster },
          h('h2', {}, cluster),
          cis.length ? instancesTable(cluster, cis) : h('p', { class: 'muted' }, 'No container instances.'))));
      } catch (e) { showError(err, e); }
    };
  }
  function instancesTable(cluster, cis) {
    const pair = (ci, name, unit) => {
      const rem = resourceOf(ci.remainingResources, name), reg = resourceOf(ci.registeredResources, name);
      return h('td', { class: 'num', 'data-resource': name }, (rem === undefined ? '-' : rem) + ' / ' + (reg === undefined ? '-' : reg) + unit);
    };
    return table(['Instance', 'Host', 'Status', 'Agent', 'Running tasks', 'CPU remaining / registered', 'Memory remaining / registered', 'Attributes'],
      cis.map((ci) => {
        const id = lastPart(ci.containerInstanceArn);
        return h('tr', { 'data-instance': id },
          h('td', { class: 'mono', title: ci.containerInstanceArn }, id.slice(0, 12)),
          h('td', {}, ci.ec2InstanceId || '-'),
          h('td', {}, status(ci.status)),
          h('td', { class: 'agent' }, ci.agentConnected ? status('CONNECTED') : status('DISCONNECTED')),
          h('td', { class: 'num running-tasks' }, h('a', { href: '#/tasks?cluster=' + encodeURIComponent(cluster) }, ci.runningTasksCount)),
          pair(ci, 'CPU', ''), pair(ci, 'MEMORY', ' MiB'),
          h('td', { class: 'mono' }, (ci.attributes || []).map((a) => h('div', {}, a.name + (a.value !== undefined && a.value !== null ? '=' + a.value : '')))));
      }), { id: 'instances-table' });
  }

  // ---- Tasks ----
  function tasksPage(main, _parts, query) {
    const f = { cluster: query.get('cluster') || '', family: query.get('family') || '', status: query.get('status') || '' };
    const err = errorBox(), body = h('div', { id: 'tasks' }, h('p', { class: 'muted' }, 'Loading…'));
    const sel = (name, label, opts) => h('label', {}, label, h('select', {
      name, onchange: (e) => { f[name] = e.target.value; go(); },
    }, opts.map(([v, t]) => h('option', { value: v, selected: v === f[name] }, t))));
    const go = () => {
      const q = new URLSearchParams(Object.entries(f).filter(([, v]) => v));
      location.hash = '#/tasks' + (q.toString() ? '?' + q : '');
    };
    const filters = h('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() });
    main.append(h('h1', {}, 'Tasks'), filters, err, body);
    let filled = false;
    return async (current) => {
      try {
        if (!filled) {
          const [clusters, families] = await Promise.all([clusterNames(),
            listAll('ListTaskDefinitionFamilies', { status: 'ALL' }, 'families')]);
          filters.replaceChildren(
            sel('cluster', 'Cluster', [['', 'all']].concat(clusters.map((c) => [c, c]))),
            sel('family', 'Family', [['', 'all']].concat(families.map((c) => [c, c]))),
            sel('status', 'Last status', [['', 'all'], ['PROVISIONING', 'PROVISIONING'], ['PENDING', 'PENDING'],
              ['RUNNING', 'RUNNING'], ['DEPROVISIONING', 'DEPROVISIONING'], ['STOPPED', 'STOPPED']]));
          filled = true;
        }
        const clusters = f.cluster ? [f.cluster] : await clusterNames();
        let tasks = [];
        for (const cluster of clusters) {
          for (const desiredStatus of ['RUNNING', 'STOPPED']) {
            const q = { cluster, desiredStatus };
            if (f.family) q.family = f.family;
            const arns = await listAll('ListTasks', q, 'taskArns');
            tasks = tasks.concat(await describeTasks(cluster, arns));
          }
        }
        if (f.status) tasks = tasks.filter((t) => t.lastStatus === f.status);
        tasks.sort((a, b) => String(b.createdAt).localeCompare(String(a.createdAt)));
        if (!current()) return;
        showError(err);
        update(body, tasks.length ? tasksTable(tasks) : h('p', { class: 'muted' }, 'No tasks match.'));
      } catch (e) { showError(err, e); }
    };
  }
  function containersCell(cs) {
    return (cs || []).map((c) => h('div', {},
      h('b', {}, c.name), ' ', status(c.lastStatus),
      c.exitCode !== undefined && c.exitCode !== null ? ' exit ' + c.exitCode : '',
      c.healthStatus && c.healthStatus !== 'UNKNOWN' ? [' ', status(c.healthStatus)] : '',
      c.reason ? h('div', { class: 'muted' }, c.reason) : ''));
  }
  function tasksTable(tasks) {
    return table(['Task', 'Cluster', 'Definition', 'Last', 'Desired', 'Stop code / reason', 'Started', 'Stopped', 'Containers'],
      tasks.map((t) => {
        const id = lastPart(t.taskArn), cluster = clusterOf(t.clusterArn);
        return h('tr', { 'data-task': id },
          h('td', { class: 'mono' }, h('a', { href: '#/task/' + encodeURIComponent(cluster) + '/' + id }, id.slice(0, 12))),
          h('td', {}, cluster), h('td', {}, tdName(t.taskDefinitionArn)),
          h('td', {}, status(t.lastStatus)), h('td', {}, status(t.desiredStatus)),
          h('td', {}, t.stopCode || '', t.stoppedReason ? h('div', { class: 'muted' }, t.stoppedReason) : ''),
          h('td', {}, time(t.startedAt)), h('td', {}, time(t.stoppedAt)),
          h('td', {}, containersCell(t.containers)));
      }), { id: 'tasks-table' });
  }

  // ---- One task ----
  const NS_EXPLAIN = {
    mnt: 'Its own filesystem view: the overlay rootfs and volumes. Fargate: the microVM has its own kernel and disk.',
    uts: 'Its own hostname. Fargate: the microVM\'s hostname.',
    ipc: 'Its own System V IPC and POSIX message queues. Fargate: separate kernel per task.',
    pid: 'Its own process tree: it sees only its processes (shared with the task for pidMode task). Fargate: the microVM\'s processes.',
    net: 'The task\'s network namespace: one per task, shared by its containers (awsvpc), like Fargate\'s one ENI per task.',
    cgroup: 'Its own view of /sys/fs/cgroup: it sees its cgroup as the root.',
    user: 'The user namespace: the host\'s (uid 0 inside is root outside), as in ECS; Fargate\'s boundary is the microVM, not the uid.',
  };
  function taskPage(main, parts) {
    const cluster = parts[0] || 'default', id = parts[1] || '';
    const err = errorBox();
    const head = h('div', {}), containers = h('div', {}), iso = h('div', { id: 'isolation' }, h('p', { class: 'muted' }, 'Loading…'));
    const cpuBox = h('div', {}), memBox = h('div', {}), gantt = h('div', { id: 'timeline' });
    const samples = [];
    const actions = h('div', { class: 'actions' });
    const logs = logView(id);
    main.append(h('h1', {}, 'Task ', h('span', { class: 'mono' }, id)), err, head, actions,
      h('h2', {}, 'Containers'), containers,
      h('h2', {}, 'Usage against the limits'),
      h('p', { class: 'explain' }, 'Read from the task\'s cgroups (what the task metadata endpoint\'s stats serve), every 2 s. Fargate reports the same numbers to CloudWatch Container Insights.'),
      h('div', { class: 'grid2' }, cpuBox, memBox),
      h('h2', {}, 'Isolation'), iso,
      h('h2', {}, 'Launch timeline'), gantt,
      h('h2', {}, 'Logs'), logs.el);
    if (!state.readOnly) {
      const reason = h('input', { id: 'stop-reason', value: 'Stopped from the web console', size: 30, 'aria-label': 'Stop reason' });
      const confirm = h('span', { hidden: true, class: 'actions' }, reason,
        h('button', { class: 'danger', id: 'stop-confirm', type: 'button', onclick: async (e) => {
          e.target.disabled = true;
          try { await ecs('StopTask', { cluster, task: id, reason: reason.value }); showError(err); tick(); } catch (x) { showError(err, x); }
          e.target.disabled = false;
        } }, 'Confirm stop'),
        h('button', { type: 'button', onclick: () => { confirm.hidden = true; } }, 'Cancel'));
      actions.append(h('button', { class: 'danger', id: 'stop-btn', type: 'button', onclick: () => { confirm.hidden = false; reason.focus(); } }, 'Stop task…'), confirm);
    }
    let isoStatus = null, prev = null;
    return async (current) => {
      try {
        const d = await ecs('DescribeTasks', { cluster, tasks: [id] });
        const t = (d.tasks || [])[0];
        if (!t) throw new Error('task ' + id + ' not found in cluster ' + cluster + ((d.failures || [])[0] ? ': ' + d.failures[0].reason : ''));
        if (!current()) return;
        showError(err);
        update(head, h('dl', { class: 'kv' },
          h('dt', {}, 'Last status'), h('dd', {}, status(t.lastStatus, 'task-status')),
          h('dt', {}, 'Desired status'), h('dd', {}, status(t.desiredStatus)),
          h('dt', {}, 'Stop code'), h('dd', { id: 'stop-code' }, t.stopCode || '-'),
          h('dt', {}, 'Stopped reason'), h('dd', {}, t.stoppedReason || '-'),
          h('dt', {}, 'Task definition'), h('dd', {}, h('a', { href: '#/taskdef/' + tdName(t.taskDefinitionArn).replace(':', '/') }, tdName(t.taskDefinitionArn))),
          h('dt', {}, 'Cluster'), h('dd', {}, cluster),
          h('dt', {}, 'Container instance'), h('dd', { id: 'task-instance', class: 'mono', title: t.containerInstanceArn || '' },
            t.containerInstanceArn ? h('a', { href: '#/instances/' + encodeURIComponent(cluster) }, lastPart(t.containerInstanceArn)) : '-'),
          h('dt', {}, 'Size'), h('dd', {}, (t.cpu || '-') + ' CPU units, ' + (t.memory || '-') + ' MiB'),
          h('dt', {}, 'Created / started / stopped'), h('dd', {}, time(t.createdAt) + ' / ' + time(t.startedAt) + ' / ' + time(t.stoppedAt))));
        const stopBtn = $('#stop-btn');
        if (stopBtn) stopBtn.disabled = t.desiredStatus === 'STOPPED';
        update(containers, table(['Name', 'Last status', 'Exit code', 'Reason', 'Health', 'Image'],
          (t.containers || []).map((c) => h('tr', {},
            h('td', {}, c.name), h('td', {}, status(c.lastStatus)),
            h('td', { class: 'num' }, c.exitCode === undefined || c.exitCode === null ? '-' : c.exitCode),
            h('td', {}, c.reason || '-'), h('td', {}, c.healthStatus ? status(c.healthStatus) : '-'),
            h('td', { class: 'mono' }, c.image)))));
        // The isolation picture: once while running (it reads /proc of live processes), and
        // again when the task's status changes.
        if (isoStatus !== t.lastStatus) {
          isoStatus = t.lastStatus;
          const r = await get('/console/api/tasks/' + id + '/isolation');
          if (!current()) return;
          iso.replaceChildren(isolationView(r));
        }
        const st = await get('/console/api/tasks/' + id + '/stats');
        if (!current()) return;
        addSample(samples, st, prev);
        prev = st;
        const cpuLimit = st.taskCpu ? Number(st.taskCpu) / 1024 : null;
        const memLimit = st.taskMemory ? Number(st.taskMemory) : null;
        cpuBox.replaceChildren(h('h3', {}, 'CPU (vCPU used', cpuLimit ? ' of ' + cpuLimit : '', ')'),
          chart('cpu-chart', samples.map((s) => s.cpu).filter((v) => v !== null), cpuLimit, (v) => v.toFixed(2)));
        memBox.replaceChildren(h('h3', {}, 'Memory (MiB used', memLimit ? ' of ' + memLimit : '', ')'),
          chart('mem-chart', samples.map((s) => s.mem), memLimit, (v) => v.toFixed(1)));
        const tl = await get('/console/api/tasks/' + id + '/timeline');
        if (!current()) return;
        update(gantt, ganttView(tl));
        await logs.poll(current);
      } catch (e) { if (current()) showError(err, e); }
    };
  }
  function addSample(samples, st, prev) {
    const running = (st.containers || []).filter((c) => c.memUsage !== undefined);
    if (!running.length) return;
    const mem = running.reduce((a, c) => a + c.memUsage, 0) / 1048576;
    let cpu = null;
    if (prev) {
      let ns = 0, dt = 0;
      for (const c of running) {
        const p = (prev.containers || []).find((x) => x.name === c.name && x.cpuTotalNs !== undefined);
        if (!p) continue;
        ns += Math.max(0, c.cpuTotalNs - p.cpuTotalNs);
        dt = Math.max(dt, (new Date(c.read) - new Date(p.read)) * 1e6);
      }
      if (dt > 0) cpu = ns / dt;
    }
    samples.push({ mem, cpu });
    if (samples.length > 90) samples.shift();
  }
  // A line chart of a task's readings `values` (oldest first) against `limit`, drawn in
  // SVG by hand (a service's CloudWatch history: timeChart).
  function chart(id, values, limit, fmt) {
    const W = 600, H = 140, L = 46, R = 8, T = 10, B = 18;
    const max = Math.max(limit || 0, ...values, 1e-9) * 1.05;
    const x = (i) => L + (values.length > 1 ? (i * (W - L - R)) / (values.length - 1) : 0);
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const svg = sv('svg', { class: 'chart', id, viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-label': id + ': ' + (values.length ? 'latest ' + fmt(values[values.length - 1]) : 'no samples yet')
        + (limit ? ', limit ' + limit : '') });
    svg.append(sv('text', { x: 4, y: T + 8 }, fmt(max)), sv('text', { x: 4, y: H - B }, '0'));
    if (limit) {
      svg.append(sv('line', { class: 'limit', x1: L, x2: W - R, y1: y(limit), y2: y(limit) }),
        sv('text', { x: W - R - 90, y: y(limit) - 3 }, 'limit ' + fmt(limit)));
    }
    if (values.length) {
      svg.append(sv('polyline', { class: 'line', points: values.map((v, i) => x(i) + ',' + y(v)).join(' ') }));
      values.forEach((v, i) => svg.append(sv('circle', { class: 'pt', cx: x(i), cy: y(v), r: 2.5 }, sv('title', {}, fmt(v)))));
      svg.append(sv('text', { x: L + 4, y: H - 4 }, 'now ' + fmt(values[values.length - 1]) + ' · ' + values.length + ' samples'));
    } else {
      svg.append(sv('text', { x: L + 4, y: H / 2 }, 'no samples: the task is not running'));
    }
    return svg;
  }
  // A container's user namespace as its uid_map says (docs/security.md "Per-task user namespaces").
function userns(un) {
  const m = (un.uidMap || [])[0];
  if (!un.ownRange || !m) return 'the host\'s: root in the container is root on the host';
  return 'the task\'s own: container ids ' + m[0] + '-' + (m[0] + m[2] - 1) + ' are host ids ' + m[1] + '-' + (m[1] + m[2] - 1) + ' (root inside is an unprivileged id outside)';
}

function explain(text, anchor) {
    return h('div', { class: 'explain' }, text, ' ', h('a', { href: DOC + (anchor ? '#' + anchor : '') }, 'How isolation works'));
  }
  // A cgroup file's value with its meaning: bytes in MiB, "no limit" spelled out.
  function cgValue(file, v) {
    v = String(v);
    if (v === 'max' || v.startsWith('max ') || (file === 'cpu.cfs_quota_us' && v === '-1')) return 'no limit (' + v + ')';
    if (file.startsWith('memory.') && /^\d+$/.test(v)) {
      const n = Number(v);
      return n >= 2 ** 62 ? 'no limit (' + v + ')' : mib(n) + ' (' + v + ')';
    }
    return v;
  }
  function cgroupTable(cgs) {
    const rows = [];
    for (const cg of cgs || []) {
      for (const [k, v] of Object.entries(cg.files || {})) {
        rows.push(h('tr', {}, h('td', { class: 'mono' }, cg.controllers), h('td', { class: 'mono' }, cg.path), h('td', { class: 'mono' }, k), h('td', { class: 'mono' }, cgValue(k, v))));
      }
    }
    return rows.length ? table(['Controllers', 'Cgroup', 'File', 'Value'], rows, { class: 'limits' }) : h('p', { class: 'muted' }, 'No cgroup (not running).');
  }
  function isolationView(r) {
    const out = [];
    out.push(h('p', { class: 'explain' }, 'Fargate runs each task in its own microVM (Firecracker): its own kernel, so every boundary below is a VM boundary there. Here the task runs on this host\'s kernel, and the same boundaries are namespaces, cgroups, an overlay rootfs, capabilities and seccomp. ',
      h('a', { href: DOC }, 'How isolation works')));
    out.push(h('h3', {}, 'Task cgroup and limits'), explain('The task\'s cgroup caps all its containers together at the task size (cpu, memory), as the microVM\'s size does on Fargate.', 'the-task-cgroup-and-the-fargate-size'));
    out.push(h('div', { id: 'limits' }, cgroupTable(r.taskCgroups)));
    const net = r.network || {};
    out.push(h('h3', {}, 'Network'), explain('One network namespace per task with one interface, standing in for the ENI Fargate attaches to each task; published ports are forwarded from this host.', 'the-network-one-namespace-per-task'));
    const att = ((net.attachments || [])[0] || {});
    const detail = (n) => ((att.details || []).find((d) => d.name === n) || {}).value || '-';
    out.push(h('dl', { class: 'kv' },
      h('dt', {}, 'ENI'), h('dd', {}, (att.id || '-') + ' (' + (att.status || '-') + ')'),
      h('dt', {}, 'IPv4'), h('dd', {}, detail('privateIPv4Address')),
      h('dt', {}, 'MAC'), h('dd', {}, detail('macAddress')),
      h('dt', {}, 'Network namespace'), h('dd', { class: 'mono' }, net.netnsPath || 'the host\'s'),
      h('dt', {}, 'Ports published'), h('dd', {}, (net.networkBindings || []).map((b) => (b.containerName + ' ' + (b.bindIP || '') + ':' + b.hostPort + ' → ' + b.containerPort + '/' + (b.protocol || 'tcp'))).join(', ') || 'none'),
      h('dt', {}, 'Ports not published'), h('dd', {}, (net.portsNotPublished || []).map((u) => (u.containerPort + '/' + u.protocol + ': ' + u.reason + ' (reachable at the task\'s own address)')).join(', ') || 'none'),
      h('dt', {}, 'Interfaces'), h('dd', {}, (net.interfaces || []).map((i) => i.name + ' ' + (i.addresses || []).join(' ')).join('; ') || '-')));
    out.push(h('h3', {}, 'Namespaces'), h('p', { class: 'legend' },
      h('span', { class: 'ns ns-own' }, 'own'), h('span', { class: 'ns ns-task' }, 'task'), h('span', { class: 'ns ns-host' }, 'host'),
      ' own: this container only · task: shared with the task\'s other containers · host: the host\'s own'));
    const kinds = ['mnt', 'uts', 'ipc', 'pid', 'net', 'cgroup', 'user'];
    const cs = r.containers || [];
    // Each namespace: a row of badges, then a row saying what it means (full width, so it
    // stays readable at phone width).
    out.push(table(['Namespace'].concat(cs.map((c) => c.name)),
      kinds.map((k) => [h('tr', { 'data-ns': k, class: 'ns-row' },
        h('th', { scope: 'row', class: 'mono' }, k),
        cs.map((c) => {
          const n = (c.namespaces || []).find((x) => x.type === k);
          return h('td', {}, n ? h('span', { class: 'ns ns-' + n.scope, title: 'inode ' + n.inode + (n.sharedWith.length ? ', shared with ' + n.sharedWith.join(', ') : '') }, n.scope) : h('span', { class: 'muted' }, '-'));
        })),
      h('tr', { class: 'ns-explain' }, h('td', { colspan: cs.length + 1 }, explain(NS_EXPLAIN[k], 'a-container-namespaces')))]), { id: 'ns-table' }));
    for (const c of cs) {
      out.push(h('h3', {}, 'Container ', c.name, ' ', status(c.lastStatus)));
      if (!c.namespaces) { out.push(h('p', { class: 'muted' }, 'Not running: no processes to look at.')); continue; }
      out.push(explain('Its own cgroup inside the task\'s: its cpu and memory limits from the container definition.', 'a-container-cgroups'), cgroupTable(c.cgroups));
      const fs = c.rootfs || {}, p = c.process || {}, un = c.userNamespace || {};
      out.push(explain('Its root filesystem: the image layers as read-only lower dirs and a per-container upper dir, as Fargate unpacks the image on the microVM\'s disk.', 'a-container-rootfs-user-capabilities-seccomp'),
        h('dl', { class: 'kv' },
          h('dt', {}, 'Rootfs'), h('dd', { class: 'mono' }, (fs.fsType || '-') + ' ' + (fs.hostPath || '')),
          h('dt', {}, 'Lower dirs (layers)'), h('dd', { class: 'mono' }, (fs.lowerdirs || []).map((l) => h('div', {}, l))),
          h('dt', {}, 'Upper dir'), h('dd', { class: 'mono' }, fs.upperdir || '-'),
          h('dt', {}, 'User'), h('dd', {}, (p.user || p.uid) + ' (uid ' + p.uid + ', gid ' + p.gid + ')' + (un.ownRange ? ', host uid ' + p.hostUid + ' gid ' + p.hostGid : '')),
          h('dt', {}, 'User namespace'), h('dd', { id: 'userns-' + c.name }, userns(un)),
          h('dt', {}, 'Capabilities'), h('dd', { class: 'mono' }, ((p.capabilities || {}).effective || []).join(' ') || 'none'),
          h('dt', {}, 'Seccomp'), h('dd', {}, String(p.seccomp || '-') + (p.seccompFilters ? ' (' + p.seccompFilters + ' filter)' : '') + (p.noNewPrivs ? ', no_new_privs' : ''))),
        explain('Capabilities and seccomp bound what root inside may ask the shared kernel; on Fargate the microVM\'s kernel is the task\'s own.', 'a-container-rootfs-user-capabilities-seccomp'));
    }
    return h('div', {}, out);
  }
  function ganttView(tl) {
    const rows = [];
    for (const p of tl.phases || []) rows.push({ label: (p.container || 'task') + ' · ' + p.phase, phase: p.phase, s: p.startUs, e: p.endUs });
    for (const r of tl.ran || []) if (r.startUs !== null && r.startUs !== undefined) rows.push({ label: r.container + ' · ran', phase: 'ran', s: r.startUs, e: r.endUs, open: r.endUs === null });
    if (!rows.length) return h('p', { class: 'muted' }, 'No phases recorded yet.');
    const order = (r) => (tl.containers || []).indexOf(r.label.split(' · ')[0]);
    // Per container in launch order: pull, rootfs, create, start, healthy, ran, stop.
    // network-config: the network's wiring, beside the pull, rootfs and create.
    const PHASES = ['network', 'network-config', 'namespaces', 'pull', 'rootfs', 'create', 'start', 'healthy', 'ran', 'stop', 'teardown'];
    const rank = (r) => { const i = PHASES.indexOf(r.phase); return i < 0 ? PHASES.length : i; };
    rows.sort((a, b) => (order(a) - order(b)) || (rank(a) - rank(b)) || (a.s - b.s));
    const ms = tl.milestones || {};
    const end = Math.max(...rows.map((r) => (r.e === null || r.e === undefined ? 0 : r.e)), ...rows.map((r) => r.s), ms.stoppedUs || 0, 1);
    const W = 900, L = 170, R = 60, RH = 18, T = 20;
    const H = T + rows.length * RH + 18;
    const x = (us) => L + ((W - L - R) * us) / end;
    const svg = sv('svg', { class: 'gantt', id: 'gantt', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'launch timeline, ' + rows.length + ' phases over ' + secs(end) });
    svg.append(sv('line', { class: 'axis', x1: L, x2: L, y1: T - 4, y2: H }), sv('text', { x: L, y: H - 4 }, '0'), sv('text', { x: W - R - 30, y: H - 4 }, secs(end)));
    for (const [name, us] of [['RUNNING', ms.runningUs], ['stopping', ms.stoppingUs]]) {
      if (us === null || us === undefined) continue;
      svg.append(sv('line', { class: 'axis', x1: x(us), x2: x(us), y1: T - 4, y2: H }), sv('text', { x: x(us) + 2, y: 12 }, name + ' ' + secs(us)));
    }
    rows.forEach((r, i) => {
      const y = T + i * RH;
      const e = r.e === null || r.e === undefined ? end : r.e;
      const known = ['pull', 'network', 'rootfs', 'create', 'start', 'healthy', 'stop', 'ran', 'teardown'];
      svg.append(sv('text', { x: 4, y: y + 12 }, r.label),
        sv('rect', { class: 'ph-' + (r.phase === 'network-config' ? 'network' : known.includes(r.phase) ? r.phase : 'other'), x: x(r.s), y: y + 2, width: Math.max(2, x(e) - x(r.s)), height: RH - 5 },
          sv('title', {}, r.label + ': ' + secs(r.s) + ' → ' + (r.open ? 'now' : secs(e)) + ' (' + secs(e - r.s) + ')')),
        sv('text', { x: Math.min(x(e) + 3, W - R + 2), y: y + 12 }, r.open ? 'running' : secs(e - r.s)));
    });
    return h('div', {}, h('p', { class: 'explain' }, 'The phases run-task --timeline records (also `minifargate timeline`), from the task\'s creation. On Fargate, the microVM\'s boot takes the place of network and rootfs.'), svg);
  }
  function logView(id) {
    const pre = h('pre', { id: 'logs', tabindex: 0, 'aria-label': 'task output' });
    const sel = h('select', { id: 'log-container', 'aria-label': 'Container' }, h('option', { value: '' }, 'all containers (merged)'));
    const follow = h('input', { type: 'checkbox', id: 'log-follow', checked: true });
    let since = null, seen = new Set(), known = [];
    const reset = () => { since = null; seen = new Set(); pre.replaceChildren(); };
    sel.addEventListener('change', () => { reset(); tick(); });
    const el = h('div', { id: 'logs-view' }, h('div', { class: 'filters' }, h('label', {}, 'Container', sel),
      h('label', {}, h('span', {}, follow, ' follow'))), pre);
    return {
      el,
      async poll(current) {
        const c = sel.value;
        const q = new URLSearchParams();
        if (c) q.set('container', c);
        if (since) q.set('since', since);
        const r = await get('/console/api/tasks/' + id + '/logs' + (q.toString() ? '?' + q : ''));
        if (!current() || sel.value !== c) return;
        for (const l of r.lines || []) {
          if (!known.includes(l.container)) { known.push(l.container); sel.append(h('option', { value: l.container }, l.container)); }
          const key = l.time + '\u0000' + l.container + '\u0000' + l.log;
          if (seen.has(key)) continue;
          seen.add(key);
          pre.append(h('div', { class: 'log-line' + (l.stream === 'stderr' ? ' log-stderr' : '') },
            c ? '' : h('span', { class: 'log-c' }, l.container + ' | '), l.log));
          since = l.time;
        }
        if (!(r.lines || []).length && !pre.childNodes.length) pre.textContent = '';
        if (follow.checked) pre.scrollTop = pre.scrollHeight;
      },
    };
  }

  // ---- Services ----
  function servicesPage(main, _parts, query) {
    const only = query.get('cluster');
    const err = errorBox(), body = h('div', { id: 'services' }, h('p', { class: 'muted' }, 'Loading…'));
    main.append(h('h1', {}, 'Services', only ? ' in ' + only : ''), err, body);
    return async (current) => {
      try {
        const clusters = only ? [only] : await clusterNames();
        let all = [];
        for (const cluster of clusters) {
          const arns = await listAll('ListServices', { cluster }, 'serviceArns');
          all = all.concat(await chunked(arns, 10, async (part) => (await ecs('DescribeServices', { cluster, services: part })).services || []));
        }
        if (!current()) return;
        showError(err);
        update(body, all.length ? table(['Service', 'Cluster', 'Status', 'Desired', 'Running', 'Pending', 'Task definition', 'Deployments'],
          all.map((s) => {
            const cluster = clusterOf(s.clusterArn);
            return h('tr', {},
              h('td', {}, h('a', { href: '#/service/' + encodeURIComponent(cluster) + '/' + encodeURIComponent(s.serviceName) }, s.serviceName)),
              h('td', {}, cluster), h('td', {}, status(s.status)),
              h('td', { class: 'num' }, s.desiredCount), h('td', { class: 'num' }, s.runningCount), h('td', { class: 'num' }, s.pendingCount),
              h('td', {}, tdName(s.taskDefinition)),
              h('td', {}, (s.deployments || []).map((d) => h('div', {}, status(d.status), ' ', d.rolloutState ? status(d.rolloutState) : '', ' ', d.runningCount + '/' + d.desiredCount))));
          })) : h('p', { class: 'muted' }, 'No services.'));
      } catch (e) { showError(err, e); }
    };
  }
  function servicePage(main, parts, query) {
    const cluster = parts[0] || 'default', name = parts[1] || '';
    const range = RANGES[query.get('range')] ? query.get('range') : '1h';
    const err = errorBox(), body = h('div', {}), form = h('div', {});
    main.append(h('h1', {}, 'Service ', name), err, form, body);
    if (!state.readOnly) {
      const count = h('input', { type: 'number', min: 0, id: 'svc-desired', 'aria-label': 'Desired count', style: null });
      const td = h('input', { id: 'svc-taskdef', placeholder: 'family:revision (unchanged if empty)', size: 32 });
      const force = h('input', { type: 'checkbox', id: 'svc-force' });
      const msg = h('span', { class: 'muted', role: 'status' });
      form.append(h('form', { class: 'filters', onsubmit: async (e) => {
        e.preventDefault();
        const req = { cluster, service: name };
        if (count.value !== '') req.desiredCount = Number(count.value);
        if (td.value.trim()) req.taskDefinition = td.value.trim();
        if (force.checked) req.forceNewDeployment = true;
        try { await ecs('UpdateService', req); showError(err); msg.textContent = 'updated'; tick(); } catch (x) { showError(err, x); }
      } }, h('label', {}, 'Desired count', count), h('label', {}, 'Task definition', td),
      h('label', {}, h('span', {}, force, ' force new deployment')), h('button', { class: 'primary', type: 'submit' }, 'Update service'), msg));
    }
    let first = true;
    return async (current) => {
      try {
        const d = await ecs('DescribeServices', { cluster, services: [name] });
        const s = (d.services || [])[0];
        if (!s) throw new Error('service ' + name + ' not found in cluster ' + cluster);
        const scaling = await scalingOf(cluster, name);
        const metrics = await metricsOf(cluster, name, range).catch((x) => ({ error: x }));
        const c = ((await ecs('DescribeClusters', { clusters: [cluster], include: ['SETTINGS'] })).clusters || [])[0] || {};
        const insights = (c.settings || []).some((x) => x.name === 'containerInsights' && ['enabled', 'enhanced'].includes(x.value));
        // Its load balancers' target groups, as DescribeTargetHealth answers them.
        const groups = [];
        for (const l of (s.loadBalancers || []).filter((x) => x.targetGroupArn)) {
          try {
            const descs = list((await elb('DescribeTargetHealth', { TargetGroupArn: l.targetGroupArn })).TargetHealthDescriptions);
            groups.push([l, descs, null]);
          } catch (x) { groups.push([l, [], x]); }
        }
        const history = groups.length ? await healthHistory().catch(() => new Map()) : new Map();
        const registries = [];
        for (const r of s.serviceRegistries || []) registries.push(await registryOf(r));
        const primary = (s.deployments || []).find((x) => x.status === 'PRIMARY') || (s.deployments || [])[0];
        const connectCfg = primary && primary.serviceConnectConfiguration;
        const connect = connectCfg && connectCfg.enabled ? await connectOf(cluster, connectCfg) : null;
        if (!current()) return;
        showError(err);
        if (first && $('#svc-desired')) { $('#svc-desired').value = s.desiredCount; first = false; }
        update(body,
          h('dl', { class: 'kv' }, h('dt', {}, 'Status'), h('dd', {}, status(s.status)),
            h('dt', {}, 'Desired / running / pending'), h('dd', { id: 'svc-counts' }, s.desiredCount + ' / ' + s.runningCount + ' / ' + s.pendingCount),
            h('dt', {}, 'Task definition'), h('dd', {}, tdName(s.taskDefinition)),
            h('dt', {}, 'Tasks'), h('dd', {}, h('a', { href: '#/tasks?cluster=' + encodeURIComponent(cluster) }, 'tasks of ' + cluster))),
          scalingSection(scaling, metrics, insights, { cluster, name, range }),
          h('h2', {}, 'Deployments'),
          table(['Id', 'Status', 'Rollout', 'Task definition', 'Desired', 'Running', 'Pending', 'Failed', 'Updated'],
            (s.deployments || []).map((x) => h('tr', {}, h('td', { class: 'mono' }, x.id), h('td', {}, status(x.status)),
              h('td', {}, status(x.rolloutState), x.rolloutStateReason ? h('div', { class: 'muted' }, x.rolloutStateReason) : ''),
              h('td', {}, tdName(x.taskDefinition)), h('td', { class: 'num' }, x.desiredCount), h('td', { class: 'num' }, x.runningCount),
              h('td', { class: 'num' }, x.pendingCount), h('td', { class: 'num' }, x.failedTasks || 0), h('td', {}, time(x.updatedAt))))),
          (s.loadBalancers || []).length ? [h('h2', {}, 'Load balancing'),
            groups.map(([l, descs, x]) => h('section', { 'data-tg': String(l.targetGroupArn).split('/')[1] },
              h('h3', {}, 'Target group ', String(l.targetGroupArn).split('/')[1], ' ',
                h('span', { class: 'muted' }, '(container ' + l.containerName + ':' + l.containerPort + ')')),
              x ? h('p', { class: 'error' }, String(x.message || x))
                : descs.length ? targetsTable(l.targetGroupArn, descs, history) : h('p', { class: 'muted' }, 'No registered targets.'))),
            h('p', {}, h('a', { href: '#/loadbalancers' }, 'all load balancers'))] : null,
          registries.length ? [h('h2', {}, 'Service discovery'), registries.map((x) => registrySection(cluster, x))] : null,
          connect ? connectSection(cluster, connect) : null,
          h('h2', {}, 'Events'),
          table(['Time', 'Message'], (s.events || []).slice(0, 50).map((e) => h('tr', {}, h('td', {}, time(e.createdAt)), h('td', {}, e.message)))));
      } catch (e) { showError(err, e); }
    };
  }

  // ---- A service's discovery names ----
  // A `serviceRegistries` entry as Cloud Map answers it: its service (GetService), that
  // service's namespace (GetNamespace) and the instances registered in it, healthy or not
  // (DiscoverInstances, HealthStatus ALL: instance id = task id).
  async function registryOf(r) {
    const out = { r };
    try {
      out.svc = (await sd('GetService', { Id: lastPart(r.registryArn) })).Service;
      out.ns = (await sd('GetNamespace', { Id: out.svc.NamespaceId })).Namespace;
      out.instances = await instancesOf(out.ns.Name, out.svc.Name);
    } catch (x) { out.error = x; }
    return out;
  }
  async function instancesOf(namespace, service) {
    const r = await sd('DiscoverInstances', { NamespaceName: namespace, ServiceName: service, HealthStatus: 'ALL', MaxResults: 1000 });
    return list(r.Instances).sort((a, b) => String(a.InstanceId).localeCompare(String(b.InstanceId)));
  }
  function discoveryInstancesTable(cluster, instances) {
    if (!instances.length) return h('p', { class: 'muted' }, 'No registered instances.');
    return table(['Instance (task)', 'Address', 'Port', 'Health'], instances.map((i) => {
      const a = i.Attributes || {};
      return h('tr', { 'data-instance': i.InstanceId },
        h('td', { class: 'mono' }, h('a', { href: '#/task/' + encodeURIComponent(cluster) + '/' + i.InstanceId }, i.InstanceId)),
        h('td', { class: 'mono instance-address' }, a.AWS_INSTANCE_IPV4 || a.AWS_INSTANCE_IPV6 || a.AWS_INSTANCE_CNAME || '-'),
        h('td', { class: 'num instance-port' }, a.AWS_INSTANCE_PORT || '-'),
        h('td', {}, status(i.HealthStatus)));
    }));
  }
  function registrySection(cluster, x) {
    const r = x.r, target = r.containerName ? r.containerName + ':' + (r.containerPort || '-') : r.port ? 'port ' + r.port : '';
    const head = (name) => h('h3', {}, name, target ? [' ', h('span', { class: 'muted' }, '(' + target + ')')] : null);
    const arn = h('p', { class: 'muted mono registry-arn' }, r.registryArn);
    if (x.error) return h('section', { class: 'registry' }, head(lastPart(r.registryArn)), arn, h('p', { class: 'error' }, String(x.error.message || x.error)));
    const records = list((x.svc.DnsConfig || {}).DnsRecords);
    const health = x.svc.HealthCheckCustomConfig ? 'custom (the tasks\' health)' : x.svc.HealthCheckConfig ? 'Route 53 health check (kept, not run)' : 'none';
    return h('section', { class: 'registry', 'data-registry': x.svc.Name + '.' + x.ns.Name },
      records.length ? head(h('span', { class: 'mono dns-name' }, x.svc.Name + '.' + x.ns.Name))
        : head(['Cloud Map service ', h('span', { class: 'mono' }, x.svc.Name), ' in ', h('span', { class: 'mono' }, x.ns.Name)]),
      arn,
      h('dl', { class: 'kv' },
        h('dt', {}, 'Records'), h('dd', { class: 'dns-records' }, records.length
          ? records.map((d) => d.Type + ' (TTL ' + d.TTL + ' s)').join(', ') + '; routing ' + (x.svc.DnsConfig.RoutingPolicy || 'MULTIVALUE')
          : 'none: found with DiscoverInstances (' + x.ns.Type + ' namespace)'),
        h('dt', {}, 'Health check'), h('dd', {}, health)),
      discoveryInstancesTable(cluster, x.instances));
  }
  // A deployment's `serviceConnectConfiguration`: its namespace (the cluster's default when
  // it names none; an ARN or id read with GetNamespace) and per `services[]` entry its
  // aliases and the Cloud Map service its tasks are registered in.
  async function connectOf(cluster, cfg) {
    const out = { cfg, named: cfg.namespace || '' };
    try {
      if (!out.named) {
        const c = list((await ecs('DescribeClusters', { clusters: [cluster] })).clusters)[0];
        out.named = (c && c.serviceConnectDefaults && c.serviceConnectDefaults.namespace) || '';
        out.byDefault = true;
      }
      out.name = out.named;
      if (out.named.startsWith('arn:') || /^ns-/.test(out.named)) {
        out.name = (await sd('GetNamespace', { Id: lastPart(out.named) })).Namespace.Name;
      }
    } catch (x) { out.error = x; }
    out.services = [];
    for (const e of list(cfg.services)) {
      const one = { e, discovery: e.discoveryName || e.portName };
      if (out.name) {
        try { one.instances = await instancesOf(out.name, one.discovery); } catch (x) { one.error = x; }
      }
      out.services.push(one);
    }
    return out;
  }
  function connectSection(cluster, c) {
    return h('section', { id: 'service-connect' }, h('h2', {}, 'Service Connect'),
      h('dl', { class: 'kv' }, h('dt', {}, 'Namespace'), h('dd', {},
        h('span', { class: 'mono connect-namespace' }, c.name || c.named || '-'),
        c.byDefault ? h('span', { class: 'muted' }, ' (the cluster\'s default)') : null,
        c.name && c.named !== c.name ? h('div', { class: 'muted mono' }, c.named) : null)),
      c.error ? h('p', { class: 'error' }, String(c.error.message || c.error)) : null,
      c.services.length ? c.services.map((x) => h('section', { class: 'connect-service', 'data-port-name': x.e.portName },
        h('h3', {}, 'Port ', h('span', { class: 'mono' }, x.e.portName), ', discovery name ', h('span', { class: 'mono' }, x.discovery)),
        h('dl', { class: 'kv' }, h('dt', {}, 'Client aliases'), h('dd', {}, list(x.e.clientAliases).length
          ? list(x.e.clientAliases).map((a) => h('div', { class: 'mono client-alias' },
            (a.dnsName || x.discovery + '.' + (c.name || c.named)) + ':' + a.port, a.dnsName ? '' : h('span', { class: 'muted' }, ' (default name)')))
          : h('span', { class: 'muted' }, 'none: the tasks register, no alias is served'))),
        x.error ? h('p', { class: 'error' }, String(x.error.message || x.error)) : x.instances ? discoveryInstancesTable(cluster, x.instances) : null))
        : h('p', { class: 'muted' }, 'No services: a client; its tasks reach the namespace\'s aliases.'));
  }

  // ---- A service's scaling ----
  // Its scalable target, policies and scaling activities, as Application Auto Scaling's
  // Describe calls answer them; its metrics: metricsOf.
  async function scalingOf(cluster, name) {
    const rid = 'service/' + cluster + '/' + name, out = {};
    try {
      out.target = list((await aas('DescribeScalableTargets', { ServiceNamespace: 'ecs', ResourceIds: [rid] })).ScalableTargets)[0];
      out.policies = list((await aas('DescribeScalingPolicies', { ServiceNamespace: 'ecs', ResourceId: rid })).ScalingPolicies);
      out.activities = list((await aas('DescribeScalingActivities', { ServiceNamespace: 'ecs', ResourceId: rid, MaxResults: 20 })).ScalingActivities);
    } catch (x) { out.scalingError = x; }
    return out;
  }
  // The time ranges a service's charts offer; the last hour is the default.
  const RANGES = { '1h': 3600, '3h': 3 * 3600, '12h': 12 * 3600, '1d': 24 * 3600 };
  // The period of a range's datapoints: the finest of 1, 5, 10, 30 s, 1, 5, 15 min and
  // 1 h that is no finer than the box's metric period (finer buckets would hold nothing),
  // gives at most 360 datapoints, and is a whole minute when the range reaches 3 hours
  // back (CloudWatch keeps sub-minute data 3 hours). AWS's 1-minute metrics: 1 min for
  // 1 h and 3 h, 5 min for 12 h and 1 d.
  function metricPeriod(range, boxPeriod) {
    for (const p of [1, 5, 10, 30, 60, 300, 900, 3600]) {
      if (p >= boxPeriod && range / p <= 360 && (range < 3 * 3600 || p >= 60)) return p;
    }
    return 3600;
  }
  // The service's history over `rangeKey` from CloudWatch, in one GetMetricData (the API's
  // own query code): AWS/ECS CPUUtilization and MemoryUtilization, and Container
  // Insights' RunningTaskCount and DesiredTaskCount (ECS/ContainerInsights, published
  // only for a cluster with containerInsights on: ECS itself keeps no history of the
  // counts); each by ClusterName and ServiceName, Average, as [time (s), value] oldest
  // first. A period with no datapoint is absent: the chart shows a gap there.
  async function metricsOf(cluster, name, rangeKey) {
    // The window ends at the end of the current period: the chart moves when a period
    // begins or a datapoint comes, not at every poll.
    const range = RANGES[rangeKey], period = metricPeriod(range, state.metricsPeriod || 60);
    const end = Math.ceil(Date.now() / 1000 / period) * period;
    const w = { start: end - range, end, period };
    const dims = [{ Name: 'ClusterName', Value: cluster }, { Name: 'ServiceName', Value: name }];
    const q = (id, ns, m) => ({ Id: id, MetricStat: { Metric: { Namespace: ns, MetricName: m, Dimensions: dims }, Period: w.period, Stat: 'Average' } });
    const queries = [q('cpu', 'AWS/ECS', 'CPUUtilization'), q('mem', 'AWS/ECS', 'MemoryUtilization'),
      q('running', 'ECS/ContainerInsights', 'RunningTaskCount'), q('desired', 'ECS/ContainerInsights', 'DesiredTaskCount')];
    const out = { w, cpu: [], mem: [], running: [], desired: [] };
    let token;
    do {
      const r = await cw('GetMetricData', Object.assign({ MetricDataQueries: queries, StartTime: w.start, EndTime: w.end,
        ScanBy: 'TimestampAscending' }, token ? { NextToken: token } : {}));
      for (const x of list(r.MetricDataResults)) {
        out[x.Id] = out[x.Id].concat(list(x.Timestamps).map((t, i) => [Number(t), Number(x.Values[i])]));
      }
      token = r.NextToken;
    } while (token);
    return out;
  }
  // The target value of the service's target tracking policy on `type`, if any.
  function trackedTarget(policies, type) {
    const p = (policies || []).find((x) => x.TargetTrackingScalingPolicyConfiguration
      && (x.TargetTrackingScalingPolicyConfiguration.PredefinedMetricSpecification || {}).PredefinedMetricType === type);
    return p ? p.TargetTrackingScalingPolicyConfiguration.TargetValue : null;
  }
  function rangeLinks(cluster, name, rangeKey) {
    const base = '#/service/' + encodeURIComponent(cluster) + '/' + encodeURIComponent(name) + '?range=';
    return h('p', { class: 'ranges', id: 'svc-ranges', role: 'group', 'aria-label': 'Time range' }, 'Last: ',
      Object.keys(RANGES).map((k) => h('a', { href: base + k, class: k === rangeKey ? 'active' : null,
        'aria-current': k === rangeKey ? 'true' : null }, k)));
  }
  function scalingSection(sc, m, insights, where) {
    const pct = (v) => v.toFixed(1) + ' %', n = (v) => String(Math.round(v * 10) / 10);
    const t = sc.target, none = 'no datapoints in this range: no task of the service has run a whole period';
    return h('section', { id: 'scaling' }, h('h2', {}, 'Metrics and scaling'),
      rangeLinks(where.cluster, where.name, where.range),
      h('p', { class: 'explain' }, 'From CloudWatch: AWS/ECS\'s CPU and memory utilization (Average, percent of what the tasks reserve), one point per ' + (m.w ? m.w.period + ' s ' : '')
        + 'period (the box publishes every ' + (state.metricsPeriod || 60) + ' s: MINIFARGATE_METRICS_PERIOD); a period without a datapoint is a gap. The dashed line is the target tracking policy\'s target.'),
      sc.scalingError ? h('p', { class: 'error' }, String(sc.scalingError.message || sc.scalingError))
        : t ? h('p', { id: 'scalable-target' }, 'Scalable target: ' + t.MinCapacity + ' to ' + t.MaxCapacity + ' tasks; policies: ',
          (sc.policies || []).length ? sc.policies.map((p) => p.PolicyName + ' (' + p.PolicyType + ')').join(', ') : 'none')
          : h('p', { class: 'muted', id: 'scalable-target' }, 'Not a scalable target (aws application-autoscaling register-scalable-target).'),
      m.error ? h('p', { class: 'error' }, String(m.error.message || m.error)) : [
        h('h3', {}, 'CPU utilization (Percent)'),
        timeChart('svc-cpu-chart', m.w, [m.cpu], pct,
          { limit: trackedTarget(sc.policies, 'ECSServiceAverageCPUUtilization'), limitLabel: 'target', empty: none }),
        h('h3', {}, 'Memory utilization (Percent)'),
        timeChart('svc-mem-chart', m.w, [m.mem], pct,
          { limit: trackedTarget(sc.policies, 'ECSServiceAverageMemoryUtilization'), limitLabel: 'target', empty: none }),
        h('h3', {}, 'Running (solid) and desired (dashed) task count (Count)'),
        insights ? timeChart('svc-count-chart', m.w, [m.running, m.desired], n, { secondLabel: 'desired',
          empty: 'no datapoints in this range: Container Insights publishes the counts once a period' })
          : h('p', { class: 'muted', id: 'svc-count-chart' }, 'No history: ECS keeps none of the counts; Container Insights publishes them (RunningTaskCount, DesiredTaskCount) for a cluster with it on: aws ecs update-cluster-settings --cluster ' + where.cluster + ' --settings name=containerInsights,value=enabled.')],
      (sc.activities || []).length ? [h('h3', {}, 'Scaling activities'),
        table(['Start', 'Description', 'Status', 'Cause'], sc.activities.map((a) => h('tr', { class: 'activity' },
          h('td', {}, time(Number(a.StartTime))), h('td', {}, a.Description),
          h('td', {}, status(String(a.StatusCode || '').toUpperCase())), h('td', { class: 'muted' }, a.Cause))))] : null);
  }
  const hhmm = (t) => { const d = new Date(t * 1000); return pad(d.getHours()) + ':' + pad(d.getMinutes()); };
  // The browser's time zone as the axis names it: "UTC" or "UTC+01:00".
  function zoneName() {
    const off = -new Date().getTimezoneOffset();
    if (!off) return 'UTC';
    return 'UTC' + (off > 0 ? '+' : '-') + pad(Math.floor(Math.abs(off) / 60)) + ':' + pad(Math.abs(off) % 60);
  }
  // A line chart of CloudWatch series over the window `w` ({start, end, period}, in
  // seconds): each series [[time, value]...] oldest first, the first solid, the second
  // dashed (o.secondLabel); x is time, labelled in the browser's time zone; a missing
  // period breaks the line (a gap, no invented point). `o`: limit and limitLabel (a
  // dashed line), empty (the text without datapoints).
  function timeChart(id, w, series, fmt, o = {}) {
    const W = 600, H = 160, L = 46, R = 8, T = 10, B = 34;
    const all = series.flat().map((p) => p[1]);
    const max = Math.max(o.limit || 0, ...all, 1e-9) * 1.05;
    const x = (t) => L + ((t - w.start) * (W - L - R)) / (w.end - w.start);
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const [first, second] = [series[0] || [], series[1] || []];
    const last = (s) => s[s.length - 1];
    const svg = sv('svg', { class: 'chart time', id, viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-label': id + ': ' + (first.length ? 'latest ' + fmt(last(first)[1]) : 'no datapoints')
        + (o.limit ? ', ' + (o.limitLabel || 'limit') + ' ' + o.limit : '')
        + (second.length ? ', ' + (o.secondLabel || 'second') + ' ' + fmt(last(second)[1]) : '')
        + '; ' + first.length + ' datapoints, period ' + w.period + ' s, ' + hhmm(w.start) + ' to ' + hhmm(w.end) + ' ' + zoneName() });
    svg.append(sv('text', { x: 4, y: T + 8 }, fmt(max)), sv('text', { x: 4, y: H - B }, fmt(0)),
      sv('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
    // Ticks on round local times, about six across the window.
    const span = w.end - w.start, zone = new Date().getTimezoneOffset() * 60;
    const step = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200].find((s) => span / s <= 6) || 86400;
    for (let t = Math.ceil((w.start - zone) / step) * step + zone; t <= w.end; t += step) {
      svg.append(sv('line', { class: 'grid', x1: x(t), x2: x(t), y1: T, y2: H - B }),
        sv('text', { class: 'tick', x: x(t), y: H - B + 13, 'text-anchor': 'middle' }, hhmm(t)));
    }
    svg.append(sv('text', { class: 'axis-title', x: W - R, y: H - 3, 'text-anchor': 'end' }, 'time (' + zoneName() + ')'));
    if (o.limit) {
      svg.append(sv('line', { class: 'limit', x1: L, x2: W - R, y1: y(o.limit), y2: y(o.limit) }),
        sv('text', { x: W - R - 90, y: y(o.limit) - 3 }, (o.limitLabel || 'limit') + ' ' + fmt(o.limit)));
    }
    series.forEach((s, k) => {
      // Runs of consecutive periods; a run breaks where a period has no datapoint.
      let run = [];
      const draw = () => { if (run.length > 1) svg.append(sv('polyline', { class: k ? 'line2' : 'line', points: run.join(' ') })); run = []; };
      s.forEach(([t, v], i) => {
        if (i && t - s[i - 1][0] > w.period * 1.5) draw();
        run.push(x(t) + ',' + y(v));
        if (!k) svg.append(sv('circle', { class: 'pt', cx: x(t), cy: y(v), r: 2.5, 'data-t': t, 'data-v': v }, sv('title', {}, time(t) + ' ' + fmt(v))));
      });
      draw();
    });
    if (!first.length) svg.append(sv('text', { x: L + 4, y: (H - B) / 2 }, o.empty || 'no datapoints'));
    return svg;
  }

  // ---- Load balancers ----
  // Each target's changes of state (and reason), with their times, as serve records them
  // (GET /console/api/target-health-history, kept across restarts; ELB's API answers the
  // present only): the strip a teacher points at when a target goes initial -> healthy ->
  // draining. Keyed by group ARN, target id and port.
  async function healthHistory() {
    const out = new Map();
    for (const t of list((await get('/console/api/target-health-history')).targets)) {
      out.set(t.targetGroupArn + '|' + t.id + '|' + t.port, list(t.points));
    }
    return out;
  }
  function healthStrip(points) {
    const label = (p) => time(new Date(p.at * 1000)) + ' ' + p.state + (p.reason ? ' (' + p.reason + ')' : '');
    return h('span', { class: 'strip', 'aria-label': 'changes: ' + points.map((p) => p.state).join(', ') },
      points.map((p) => h('span', { class: 'tick t-' + p.state, title: label(p), 'data-state': p.state })),
      points.length ? h('span', { class: 'muted since' }, ' since ' + time(new Date(points[points.length - 1].at * 1000))) : '');
  }
  function targetsTable(tgArn, descs, history) {
    return table(['Target', 'State', 'Reason', 'Description', 'Health changes'],
      descs.map((d) => h('tr', { 'data-target': d.Target.Id + ':' + d.Target.Port },
        h('td', { class: 'mono' }, d.Target.Id + ':' + d.Target.Port),
        h('td', { class: 'target-state' }, status(String(d.TargetHealth.State || '').toUpperCase())),
        h('td', { class: 'mono' }, d.TargetHealth.Reason || ''),
        h('td', {}, d.TargetHealth.Description || ''),
        h('td', {}, healthStrip(history.get(tgArn + '|' + d.Target.Id + '|' + d.Target.Port) || [])))));
  }
  function actionText(a, tgNames) {
    const fwd = a.ForwardConfig && list(a.ForwardConfig.TargetGroups);
    if (a.Type === 'forward' && fwd && fwd.length > 1) {
      return 'forward ' + fwd.map((g) => (tgNames[g.TargetGroupArn] || lastPart(g.TargetGroupArn)) + ' (weight ' + (g.Weight || 1) + ')').join(', ');
    }
    if (a.Type === 'forward') return 'forward to ' + (tgNames[a.TargetGroupArn] || (fwd && fwd[0] && tgNames[fwd[0].TargetGroupArn]) || lastPart(a.TargetGroupArn));
    if (a.Type === 'fixed-response' && a.FixedResponseConfig) return 'fixed response ' + a.FixedResponseConfig.StatusCode;
    if (a.Type === 'redirect' && a.RedirectConfig) return 'redirect ' + a.RedirectConfig.StatusCode;
    return a.Type;
  }
  function conditionText(c) {
    const values = list(c.Values).length ? list(c.Values)
      : list((c.PathPatternConfig || c.HostHeaderConfig || c.HttpRequestMethodConfig || c.SourceIpConfig || {}).Values);
    if (c.Field === 'http-header' && c.HttpHeaderConfig) return c.HttpHeaderConfig.HttpHeaderName + ' is ' + list(c.HttpHeaderConfig.Values).join(' or ');
    if (c.Field === 'query-string' && c.QueryStringConfig) return 'query ' + list(c.QueryStringConfig.Values).map((kv) => (kv.Key ? kv.Key + '=' : '') + kv.Value).join(' or ');
    return c.Field + ' is ' + values.join(' or ');
  }
  function loadBalancersPage(main) {
    const err = errorBox(), body = h('div', { id: 'loadbalancers' }, h('p', { class: 'muted' }, 'Loading…'));
    main.append(h('h1', {}, 'Load balancers'),
      h('p', { class: 'explain' }, 'DescribeLoadBalancers, DescribeListeners, DescribeRules, DescribeTargetGroups and DescribeTargetHealth, as `aws elbv2` answers them (docs/load-balancing.md). Each load balancer answers at its DNS name on its listener ports; a target gets requests while it is healthy (or while every target is unhealthy: fail open).'),
      err, body);
    return async (current) => {
      try {
        const lbs = await elbAll('DescribeLoadBalancers', {}, 'LoadBalancers');
        const tgs = await elbAll('DescribeTargetGroups', {}, 'TargetGroups');
        const tgNames = {};
        for (const g of tgs) tgNames[g.TargetGroupArn] = g.TargetGroupName;
        const listeners = {};
        for (const lb of lbs) {
          const ls = await elbAll('DescribeListeners', { LoadBalancerArn: lb.LoadBalancerArn }, 'Listeners');
          for (const l of ls) {
            l.rules = l.Protocol === 'HTTP' ? await elbAll('DescribeRules', { ListenerArn: l.ListenerArn }, 'Rules') : [];
          }
          listeners[lb.LoadBalancerArn] = ls;
        }
        const health = {};
        for (const g of tgs) {
          health[g.TargetGroupArn] = list((await elb('DescribeTargetHealth', { TargetGroupArn: g.TargetGroupArn })).TargetHealthDescriptions);
        }
        const history = await healthHistory();
        if (!current()) return;
        showError(err);
        const lbNames = {};
        for (const lb of lbs) lbNames[lb.LoadBalancerArn] = lb.LoadBalancerName;
        update(body,
          lbs.length ? null : h('p', { class: 'muted' }, 'No load balancers: aws elbv2 create-load-balancer makes one.'),
          lbs.map((lb) => h('section', { class: 'card', 'data-lb': lb.LoadBalancerName },
            h('h2', {}, lb.LoadBalancerName, ' ', status((lb.State && lb.State.Code || '').toUpperCase())),
            h('dl', { class: 'kv' },
              h('dt', {}, 'DNS name'), h('dd', { class: 'mono dns-name' }, lb.DNSName),
              h('dt', {}, 'Type, scheme'), h('dd', {}, lb.Type + ', ' + lb.Scheme),
              h('dt', {}, 'Address'), h('dd', { class: 'mono' }, list(lb.AvailabilityZones).flatMap((z) => list(z.LoadBalancerAddresses).map((a) => a.IpAddress)).join(', ') || '-'),
              h('dt', {}, 'Created'), h('dd', {}, time(lb.CreatedTime))),
            h('h3', {}, 'Listeners'),
            (listeners[lb.LoadBalancerArn] || []).length ? table(['Port', 'Protocol', 'Rules (by priority) and default action'],
              listeners[lb.LoadBalancerArn].map((l) => h('tr', { 'data-listener': l.Port },
                h('td', { class: 'num' }, l.Port), h('td', {}, l.Protocol),
                h('td', { class: 'rules' }, l.rules.length
                  ? l.rules.map((r) => h('div', { class: 'rule' }, h('b', {}, r.Priority), ': ',
                    list(r.Conditions).map(conditionText).join(' and ') || 'otherwise', ' → ',
                    list(r.Actions).map((a) => actionText(a, tgNames)).join(', ')))
                  : list(l.DefaultActions).map((a) => actionText(a, tgNames)).join(', '))))) : h('p', { class: 'muted' }, 'No listeners.'))),
          h('h2', {}, 'Target groups'),
          tgs.length ? null : h('p', { class: 'muted' }, 'No target groups.'),
          tgs.map((g) => h('section', { class: 'card', 'data-tg': g.TargetGroupName },
            h('h3', {}, g.TargetGroupName, ' ', h('span', { class: 'muted' }, g.Protocol + ':' + g.Port + ', targets by ' + g.TargetType)),
            h('p', { class: 'muted' }, 'Health check ', g.HealthCheckProtocol, ' ', g.HealthCheckPath || '', ' every ', g.HealthCheckIntervalSeconds, ' s (timeout ', g.HealthCheckTimeoutSeconds,
              ' s), healthy after ', g.HealthyThresholdCount, ', unhealthy after ', g.UnhealthyThresholdCount,
              '; load balancers: ', list(g.LoadBalancerArns).map((a) => lbNames[a] || lastPart(a)).join(', ') || 'none'),
            health[g.TargetGroupArn].length ? targetsTable(g.TargetGroupArn, health[g.TargetGroupArn], history)
              : h('p', { class: 'muted' }, 'No registered targets: requests get 503.'))));
      } catch (e) { showError(err, e); }
    };
  }

  // ---- ECR repositories ----
  // ECR reads (POST /console/api/ecr/<Op>, the API's own dispatch, AWS JSON 1.1); a
  // repository's lifecycle policy, preview and expired images from
  // /console/api/repositories/lifecycle (null where there is none yet).
  async function ecrAll(op, body, key) {
    let out = [], token;
    do {
      const r = await post('/console/api/ecr/' + op, Object.assign({}, body, token ? { nextToken: token } : {}));
      out = out.concat(list(r[key]));
      token = r.nextToken;
    } while (token);
    return out;
  }
  const shortDigest = (d) => String(d || '').replace(/^sha256:/, '').slice(0, 12);
  const tagsText = (t) => list(t).length ? list(t).join(', ') : '<untagged>';
  function mutabilityText(r) {
    const f = list(r.imageTagMutabilityExclusionFilters).map((x) => x.filter);
    if (!f.length) return r.imageTagMutability;
    const opposite = r.imageTagMutability === 'IMMUTABLE_WITH_EXCLUSION' ? 'mutable' : 'immutable';
    return r.imageTagMutability + ' (' + opposite + ': ' + f.join(', ') + ')';
  }
  function repositoriesPage(main) {
    const err = errorBox(), body = h('div', { id: 'repositories' }, h('p', { class: 'muted' }, 'Loading…'));
    main.append(h('h1', {}, 'Repositories'),
      h('p', { class: 'explain' }, 'This box\'s ECR (docs/registry.md): DescribeRepositories, DescribeImages, GetLifecyclePolicy and GetLifecyclePolicyPreview, as `aws ecr` answers them, and the images lifecycle expiry removed (the newest 100 of each repository). Push with `aws ecr get-login-password | podman login` and `podman push`, or `minifargate push <archive> <repositoryUri>:<tag>`.'),
      err, body);
    return async (current) => {
      try {
        const repos = await ecrAll('DescribeRepositories', {}, 'repositories');
        const detail = {};
        for (const r of repos) {
          const name = r.repositoryName;
          const images = await ecrAll('DescribeImages', { repositoryName: name }, 'imageDetails');
          images.sort((a, b) => (b.imagePushedAt || 0) - (a.imagePushedAt || 0));
          const l = await get('/console/api/repositories/lifecycle?repositoryName=' + encodeURIComponent(name));
          detail[name] = { images, policy: l.lifecyclePolicy, preview: l.preview, expired: list(l.expired) };
        }
        if (!current()) return;
        showError(err);
        update(body,
          repos.length ? null : h('p', { class: 'muted' }, 'No repositories: aws ecr create-repository makes one.'),
          repos.map((r) => {
            const x = detail[r.repositoryName];
            let text = x.policy ? x.policy.lifecyclePolicyText : '';
            try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* shown as stored */ }
            const results = x.preview ? list(x.preview.previewResults) : [];
            return h('section', { class: 'card', 'data-repo': r.repositoryName },
              h('h2', {}, r.repositoryName),
              h('dl', { class: 'kv' },
                h('dt', {}, 'URI'), h('dd', { class: 'mono repo-uri' }, r.repositoryUri),
                h('dt', {}, 'Tag mutability'), h('dd', { class: 'mutability' }, mutabilityText(r)),
                h('dt', {}, 'Created'), h('dd', {}, time(r.createdAt))),
              h('h3', {}, 'Images'),
              x.images.length ? table(['Tags', 'Digest', 'Size', 'Pushed at', 'Last pull'],
                x.images.map((i) => h('tr', { 'data-image': i.imageDigest },
                  h('td', { class: 'image-tags' }, tagsText(i.imageTags)),
                  h('td', { class: 'mono', title: i.imageDigest }, shortDigest(i.imageDigest)),
                  h('td', { class: 'num image-size' }, mib(i.imageSizeInBytes || 0)),
                  h('td', {}, time(i.imagePushedAt)),
                  h('td', { class: 'last-pull' }, i.lastRecordedPullTime ? time(i.lastRecordedPullTime) : 'never'))))
                : h('p', { class: 'muted' }, 'No images.'),
              h('h3', {}, 'Lifecycle policy'),
              x.policy ? [
                h('p', { class: 'muted' }, 'Last applied: ', x.policy.lastEvaluatedAt ? time(x.policy.lastEvaluatedAt) : 'not yet'),
                h('pre', { class: 'lifecycle-policy' }, text)]
                : h('p', { class: 'muted' }, 'None: aws ecr put-lifecycle-policy sets one.'),
              h('h3', {}, 'Preview'),
              x.preview ? (results.length ? table(['Would expire', 'Digest', 'Pushed at', 'Rule'],
                results.map((p) => h('tr', { 'data-preview': p.imageDigest },
                  h('td', {}, tagsText(p.imageTags)),
                  h('td', { class: 'mono', title: p.imageDigest }, shortDigest(p.imageDigest)),
                  h('td', {}, time(p.imagePushedAt)),
                  h('td', { class: 'num' }, p.appliedRulePriority))))
                : h('p', { class: 'muted preview-none' }, 'The last preview expires nothing.'))
                : h('p', { class: 'muted' }, 'No preview: aws ecr start-lifecycle-policy-preview makes one.'),
              h('h3', {}, 'Expired'),
              x.expired.length ? table(['Tags', 'Digest', 'Pushed at', 'Rule', 'Expired at'],
                x.expired.map((e) => h('tr', { 'data-expired': e.imageDigest },
                  h('td', {}, tagsText(e.imageTags)),
                  h('td', { class: 'mono', title: e.imageDigest }, shortDigest(e.imageDigest)),
                  h('td', {}, time(e.imagePushedAt)),
                  h('td', { class: 'num' }, e.appliedRulePriority),
                  h('td', {}, time(e.expiredAt)))))
                : h('p', { class: 'muted' }, 'Nothing expired yet.'));
          }));
      } catch (e) { showError(err, e); }
    };
  }

  // ---- Task definitions ----
  function taskdefsPage(main) {
    const err = errorBox(), body = h('div', { id: 'taskdefs' }, h('p', { class: 'muted' }, 'Loading…'));
    main.append(h('h1', {}, 'Task definitions'), err, body);
    let done = false;
    return async (current) => {
      if (done) return;
      try {
        const families = await listAll('ListTaskDefinitionFamilies', { status: 'ALL' }, 'families');
        const rows = [];
        for (const f of families) {
          const arns = (await listAll('ListTaskDefinitions', { familyPrefix: f, status: 'ACTIVE', sort: 'DESC' }, 'taskDefinitionArns'))
            .filter((a) => tdName(a).split(':')[0] === f);
          rows.push(h('tr', {}, h('th', { scope: 'row' }, f),
            h('td', {}, arns.map((a) => [h('a', { href: '#/taskdef/' + tdName(a).replace(':', '/') }, tdName(a).split(':')[1]), ' ']))));
        }
        if (!current()) return;
        done = true;
        body.replaceChildren(rows.length ? table(['Family', 'Active revisions'], rows) : h('p', { class: 'muted' }, 'None registered.'));
      } catch (e) { showError(err, e); }
    };
  }
  // Keys sorted, two-space indent: two revisions line up for the diff.
  function canonical(v) {
    if (Array.isArray(v)) return v.map(canonical);
    if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical(v[k])]));
    return v;
  }
  function diffLines(a, b) {
    const n = a.length, m = b.length;
    if (n * m > 4e6) return [['~', 'too large to diff']];
    const dp = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
    for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) dp[i][j] = a[i] === b[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
    const out = [];
    let i = 0, j = 0;
    while (i < n && j < m) {
      if (a[i] === b[j]) { out.push([' ', a[i]]); i++; j++; } else if (dp[i + 1][j] >= dp[i][j + 1]) out.push(['-', a[i++]]); else out.push(['+', b[j++]]);
    }
    while (i < n) out.push(['-', a[i++]]);
    while (j < m) out.push(['+', b[j++]]);
    return out;
  }
  // The changed lines with `ctx` lines around them; longer unchanged runs become one line.
  function hunks(d, ctx) {
    const near = d.map(() => false);
    d.forEach(([k], i) => { if (k !== ' ') for (let j = Math.max(0, i - ctx); j <= Math.min(d.length - 1, i + ctx); j++) near[j] = true; });
    const out = [];
    for (let i = 0; i < d.length;) {
      if (near[i]) { out.push(d[i++]); continue; }
      let j = i;
      while (j < d.length && !near[j]) j++;
      out.push(['~', '  ⋯ ' + (j - i) + ' unchanged line(s)']);
      i = j;
    }
    return out;
  }
  function taskdefPage(main, parts) {
    const family = parts[0] || '', rev = parts[1] || '';
    const err = errorBox();
    const json = h('pre', { id: 'taskdef-json', tabindex: 0 }), findings = h('div', { id: 'findings' }), diff = h('div', {}), run = h('div', {});
    const other = h('select', { id: 'diff-with', 'aria-label': 'Compare with revision' });
    main.append(h('h1', {}, 'Task definition ', family + ':' + rev), err, run,
      h('h2', {}, 'Validate findings'), findings,
      h('h2', {}, 'JSON'), json,
      h('h2', {}, 'Diff'), h('div', { class: 'filters' }, h('label', {}, 'Compare with revision', other)), diff);
    let mine = null;
    const showDiff = async () => {
      if (!other.value || !mine) { diff.replaceChildren(); return; }
      try {
        const o = (await ecs('DescribeTaskDefinition', { taskDefinition: family + ':' + other.value })).taskDefinition;
        // Members every revision has its own of are left out: only what was changed shows.
        const own = ['taskDefinitionArn', 'revision', 'registeredAt', 'registeredBy', 'deregisteredAt'];
        const strip = (t) => Object.fromEntries(Object.entries(t || {}).filter(([k]) => !own.includes(k)));
        const a = JSON.stringify(canonical(strip(o)), null, 2).split('\n'), b = JSON.stringify(canonical(strip(mine)), null, 2).split('\n');
        const d = diffLines(a, b);
        const changed = d.filter(([k]) => k !== ' ').length;
        diff.replaceChildren(h('p', { class: 'muted' }, '- revision ' + other.value + '   + revision ' + rev + ' · ' + changed + ' line(s) differ'),
          h('pre', { id: 'diff' }, hunks(d, 3).map(([k, l]) => h('span', { class: k === '+' ? 'diff-add' : k === '-' ? 'diff-del' : k === '~' ? 'diff-skip' : 'diff-same' }, k === '~' ? l : k + ' ' + l))));
      } catch (e) { showError(err, e); }
    };
    other.addEventListener('change', showDiff);
    if (!state.readOnly) {
      const cluster = h('input', { id: 'run-cluster', value: 'default', size: 14 });
      const count = h('input', { id: 'run-count', type: 'number', min: 1, max: 10, value: 1 });
      const overrides = h('textarea', { id: 'run-overrides', placeholder: '{"containerOverrides": [{"name": "app", "command": ["sh", "-c", "echo hi"]}]}', 'aria-label': 'Overrides (JSON)' });
      const msg = h('span', { role: 'status', id: 'run-result' });
      run.append(h('form', { onsubmit: async (e) => {
        e.preventDefault();
        try {
          const req = { cluster: cluster.value || 'default', taskDefinition: family + ':' + rev, count: Number(count.value || 1) };
          if (overrides.value.trim()) req.overrides = JSON.parse(overrides.value);
          const r = await ecs('RunTask', req);
          showError(err);
          const ids = (r.tasks || []).map((t) => lastPart(t.taskArn));
          msg.replaceChildren(h('span', {}, 'started ', ids.map((x) => [h('a', { href: '#/task/' + encodeURIComponent(req.cluster) + '/' + x }, x.slice(0, 12)), ' ']),
            (r.failures || []).map((f) => ' failure: ' + f.reason)));
        } catch (x) { showError(err, x); }
      } }, h('h2', {}, 'Run task'),
      h('div', { class: 'filters' }, h('label', {}, 'Cluster', cluster), h('label', {}, 'Count', count),
        h('button', { class: 'primary', type: 'submit', id: 'run-btn' }, 'Run task'), msg),
      h('label', {}, 'Overrides (RunTask overrides JSON, optional)', overrides)));
    }
    let done = false;
    return async (current) => {
      if (done) return;
      try {
        const d = await ecs('DescribeTaskDefinition', { taskDefinition: family + ':' + rev, include: ['TAGS'] });
        mine = d.taskDefinition;
        let arns = [];
        for (const st of ['ACTIVE', 'INACTIVE']) arns = arns.concat(await listAll('ListTaskDefinitions', { familyPrefix: family, status: st, sort: 'DESC' }, 'taskDefinitionArns'));
        const revs = arns.map(tdName).filter((n) => n.split(':')[0] === family).map((n) => n.split(':')[1]).filter((r) => r !== rev);
        const f = await get('/console/api/taskdefs/' + encodeURIComponent(family) + '/' + encodeURIComponent(rev) + '/findings');
        if (!current()) return;
        done = true;
        json.textContent = JSON.stringify(mine, null, 2);
        other.replaceChildren(h('option', { value: '' }, revs.length ? 'choose a revision' : 'no other revision'), ...revs.map((r) => h('option', { value: r }, r)));
        const list = f.findings || [];
        findings.replaceChildren(h('p', {}, f.valid ? 'Valid' : 'Invalid', ' (', f.fargate ? 'ECS and Fargate rules' : 'ECS rules', '): ', f.errors + ' error(s), ' + f.warnings + ' warning(s) — the verdict of `minifargate validate`.'),
          list.length ? table(['Severity', 'Rule', 'Member', 'Message'], list.map((x) => h('tr', {},
            h('td', { class: 'sev-' + (x.severity || '') }, x.severity || ''), h('td', { class: 'mono' }, x.rule || x.code || ''),
            h('td', { class: 'mono' }, x.path || ''), h('td', {}, x.message || '')))) : '');
      } catch (e) { showError(err, e); }
    };
  }

  // ---- Start ----
  async function start() {
    try {
      const c = await get('/console/api/config');
      state.readOnly = !!c.readOnly;
      state.metricsPeriod = c.metricsPeriod || 60;
      $('#mode').textContent = 'v' + c.version + (c.readOnly ? ' · read-only' : '');
    } catch (e) { $('#mode').textContent = String(e.message || e); }
    window.addEventListener('hashchange', route);
    document.addEventListener('visibilitychange', tick);
    setInterval(tick, POLL_MS);
    if (!location.hash) location.replace('#/clusters');
    route();
  }
  document.addEventListener('DOMContentLoaded', start);
})();
