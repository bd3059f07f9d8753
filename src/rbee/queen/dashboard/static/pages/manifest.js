// The dashboard's pages, in menu order; the shell shows those the key's role may use.
// Add a page with one import line and one array line, each in your section: sections
// keep parallel branches from touching the same lines.

// -- cluster, actions, jobs
import cluster from "./cluster.js";
import jobs from "./jobs.js";

// -- playground, scheduler
import playground from "./playground.js";
import scheduler from "./scheduler.js";

// -- tenants, keys, quotas, usage, audit, GDPR
import tenants from "./tenants.js";
import keys from "./keys.js";
import usage from "./usage.js";
import audit from "./audit.js";
import gdpr from "./gdpr.js";

export default [
  // -- cluster, actions, jobs
  cluster,
  jobs,

  // -- playground, scheduler
  playground,
  scheduler,

  // -- tenants, keys, quotas, usage, audit, GDPR
  tenants,
  keys,
  usage,
  audit,
  gdpr,
];
