// The official OpenAI Node SDK against an rbee queen (tests/e2e/test_node_sdk.py runs this).
// Reads RBEE_BASE_URL, RBEE_MODEL and RBEE_RUNS; prints one JSON object with what each call
// returned, and the Python test asserts on it. Any error exits 1 with the SDK's message.
import OpenAI from "openai";
import { VERSION } from "openai/version";

const client = new OpenAI({ baseURL: process.env.RBEE_BASE_URL, apiKey: "x", maxRetries: 0,
                            timeout: 120_000 });
const model = process.env.RBEE_MODEL;
const runs = Number(process.env.RBEE_RUNS ?? "20");
const CITIES = ["Paris", "Berlin", "Tokyo", "Lima", "Oslo", "Cairo", "Madrid", "Rome"];
const ANIMALS = ["a lazy cat", "a loud dog", "a tiny bird", "an old cat", "a young dog"];

const WEATHER = {
  type: "function",
  function: {
    name: "get_weather", description: "Current weather for a city",
    parameters: {
      type: "object", additionalProperties: false, required: ["city", "unit"],
      properties: { city: { type: "string" }, unit: { type: "string", enum: ["celsius", "fahrenheit"] } },
    },
  },
};
const PET = {
  type: "object", additionalProperties: false, required: ["name", "species", "age", "toys"],
  properties: {
    name: { type: "string", maxLength: 40 },
    species: { type: "string", enum: ["cat", "dog", "bird"] },
    age: { type: "integer" },
    toys: { type: "array", items: { type: "string", maxLength: 30 }, maxItems: 3 },
  },
};

async function streamedChat() {
  const stream = await client.chat.completions.create({
    model, messages: [{ role: "user", content: "Write one sentence about bees." }],
    max_tokens: 24, seed: 1, stream: true, stream_options: { include_usage: true },
  });
  let text = "", chunks = 0, finish = null, usage = null;
  for await (const chunk of stream) {
    chunks += 1;
    usage = chunk.usage ?? usage;
    for (const c of chunk.choices) {
      text += c.delta.content ?? "";
      finish = c.finish_reason ?? finish;
    }
  }
  return { text, chunks, finish_reason: finish, usage };
}

async function toolCall(i) {
  const city = CITIES[i % CITIES.length];
  const r = await client.chat.completions.create({
    model, messages: [{ role: "user", content: `What is the weather in ${city} today?` }],
    tools: [WEATHER], tool_choice: i % 2 ? "required" : { type: "function", function: { name: "get_weather" } },
    seed: i, max_tokens: 96,
  });
  const choice = r.choices[0];
  return { finish_reason: choice.finish_reason, message: choice.message };
}

async function structured(i) {
  const r = await client.chat.completions.parse({
    model, messages: [{ role: "user", content: `Describe ${ANIMALS[i % ANIMALS.length]} as JSON with its name, species, age and toys.` }],
    response_format: { type: "json_schema", json_schema: { name: "pet", schema: PET, strict: true } },
    seed: 100 + i, max_tokens: 200,
  });
  const choice = r.choices[0];
  return { finish_reason: choice.finish_reason, content: choice.message.content, parsed: choice.message.parsed };
}

async function agentLoop() {
  const messages = [{ role: "user", content: "What is the weather in Oslo, in celsius?" }];
  const first = await client.chat.completions.create({
    model, messages, tools: [WEATHER], tool_choice: "required", seed: 3, max_tokens: 96 });
  const call = first.choices[0].message.tool_calls[0];
  messages.push(first.choices[0].message);
  const { city } = JSON.parse(call.function.arguments);
  messages.push({ role: "tool", tool_call_id: call.id, content: `${city}: sunny, 18 degrees` });
  const final = await client.chat.completions.create({
    model, messages, tools: [WEATHER], tool_choice: "none", seed: 3, max_tokens: 48 });
  return { call, final_reason: final.choices[0].finish_reason, final: final.choices[0].message };
}

async function responses() {
  const plain = await client.responses.create({
    model, input: "Say hello in one short sentence.", max_output_tokens: 24,
  });
  const tool = await client.responses.create({
    model, input: "What is the weather in Lima?", tool_choice: "required",
    tools: [{ type: "function", name: WEATHER.function.name, parameters: WEATHER.function.parameters, strict: true }],
  });
  const json = await client.responses.create({
    model, input: "Describe a lazy cat.", max_output_tokens: 200,
    text: { format: { type: "json_schema", name: "pet", schema: PET, strict: true } },
  });
  const pick = (r) => ({ id: r.id, status: r.status, output_text: r.output_text, output: r.output, usage: r.usage });
  return { plain: pick(plain), tool: pick(tool), json: pick(json) };
}

async function embeddings() {
  // The SDK asks for base64 unless told otherwise and decodes it to floats itself.
  const texts = ["cat", "kitten", "GPU"];
  const b64 = await client.embeddings.create({ model: "minilm", input: texts });
  const float = await client.embeddings.create({ model: "minilm", input: texts, encoding_format: "float" });
  return { model: b64.model, usage: b64.usage, base64: b64.data.map((d) => Array.from(d.embedding)),
           float: float.data.map((d) => d.embedding) };
}

async function speech() {
  const input = "The queen routes every request. The worker speaks it aloud, one sentence at a time.";
  const whole = await client.audio.speech.create({ model: "tts-1", voice: "alloy", input, response_format: "wav" });
  const wav = Buffer.from(await whole.arrayBuffer());
  // Streamed: the body is read as it arrives, chunk by chunk.
  const streamed = await client.audio.speech.create({ model: "piper-joe", voice: "joe", input, response_format: "pcm" });
  let chunks = 0, bytes = 0;
  for await (const chunk of streamed.body) { chunks += 1; bytes += chunk.length; }
  return { content_type: whole.headers.get("content-type"), wav_b64: wav.toString("base64"),
           pcm_chunks: chunks, pcm_bytes: bytes };
}

async function main() {
  const out = { node: process.version, sdk: VERSION };
  out.models = (await client.models.list()).data.map((m) => m.id);
  out.stream = await streamedChat();
  out.tools = [];
  for (let i = 0; i < runs; i++) out.tools.push(await toolCall(i));
  out.structured = [];
  for (let i = 0; i < runs; i++) out.structured.push(await structured(i));
  out.agent = await agentLoop();
  out.responses = await responses();
  out.embeddings = await embeddings();
  out.speech = await speech();
  process.stdout.write(JSON.stringify(out));
}

main().catch((err) => {
  process.stderr.write(`${err.constructor.name}: ${err.message}\n${JSON.stringify(err.error ?? null)}\n`);
  process.exit(1);
});
