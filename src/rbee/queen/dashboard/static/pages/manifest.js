import audit from "./audit.js";
import gdpr from "./gdpr.js";
import keys from "./keys.js";
import tenants from "./tenants.js";
import usage from "./usage.js";

export default [tenants, keys, usage, audit, gdpr];
