// The key browser: scan, get, put and delete raw keys through the wasm RawClient.
import init, { RawClient } from '../pkg-web/tikv_client_wasm.js';

const $ = (id) => document.getElementById(id);
const decoder = new TextDecoder();
let client = null;

function show(message, error = false) {
  $('status').textContent = message;
  $('status').className = error ? 'error' : '';
}

function render(pairs) {
  const body = $('pairs').tBodies[0];
  body.replaceChildren(
    ...pairs.map(({ key, value }) => {
      const row = document.createElement('tr');
      for (const bytes of [key, value]) {
        const cell = document.createElement('td');
        cell.textContent = decoder.decode(bytes);
        row.append(cell);
      }
      return row;
    }),
  );
}

/** Runs `action`, reporting its outcome (errors carry the client's `code`). */
async function run(action) {
  if (!client) {
    show('Connect first.', true);
    return;
  }
  try {
    show(await action());
  } catch (e) {
    show(`${e.code ?? 'Error'}: ${e.message}`, true);
  }
}

/** The end of the range of keys starting with `prefix` ('' when unbounded). */
function prefixEnd(prefix) {
  const bytes = new TextEncoder().encode(prefix);
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i] < 0xff) {
      const end = bytes.slice(0, i + 1);
      end[i] += 1;
      return end;
    }
  }
  return '';
}

$('connect').addEventListener('submit', async (event) => {
  event.preventDefault();
  show('Connecting…');
  try {
    client = await RawClient.connect([$('pd').value]);
    show(`Connected to ${$('pd').value}.`);
  } catch (e) {
    client = null;
    show(`${e.code ?? 'Error'}: ${e.message}`, true);
  }
});

$('scan').addEventListener('submit', (event) => {
  event.preventDefault();
  run(async () => {
    const prefix = $('prefix').value;
    const pairs = await client.scan(prefix, prefixEnd(prefix), Number($('limit').value));
    render(pairs);
    return `${pairs.length} keys${prefix ? ` with prefix "${prefix}"` : ''}.`;
  });
});

$('edit').addEventListener('submit', (event) => {
  event.preventDefault();
  run(async () => {
    await client.put($('key').value, $('value').value);
    return `Put "${$('key').value}".`;
  });
});

$('get').addEventListener('click', () =>
  run(async () => {
    const value = await client.get($('key').value);
    if (value === undefined) return `"${$('key').value}" is not set.`;
    $('value').value = decoder.decode(value);
    return `"${$('key').value}" = "${$('value').value}".`;
  }),
);

$('delete').addEventListener('click', () =>
  run(async () => {
    await client.delete($('key').value);
    return `Deleted "${$('key').value}".`;
  }),
);

await init();
const pd = new URLSearchParams(location.search).get('pd');
if (pd) {
  $('pd').value = pd;
  $('connect').requestSubmit();
}
