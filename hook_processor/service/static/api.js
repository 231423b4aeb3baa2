// The dashboard's client of the service's own API: Bearer tokens and the OData calls.
//
// sessionStorage holds {token, login}: the access token (never a password) and whether it came
// from the login form (then the page offers "Log out"). Without a kept token the page asks
// POST /dashboard/token (a loopback service without --users gives one); a 403 there means the
// service asks for a login, and `loginNeeded` is called to show the form.

export const ROOT = "/odata/v1/";
export const TOKEN_PATH = "/auth/realms/dedl/protocol/openid-connect/token";
const LOCAL_TOKEN = "/dashboard/token";
const TOKEN_KEY = "hook-processor-dashboard-token";

export class AuthNeeded extends Error {}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export const session = {
  loginMode: false, // the service asked for a login (403 from LOCAL_TOKEN)
  loginNeeded: (message) => {}, // set by the page: show the login form with this message
};

function saved() {
  try {
    return JSON.parse(sessionStorage.getItem(TOKEN_KEY)) || null;
  } catch {
    return null;
  }
}

function keep(accessToken, login) {
  sessionStorage.setItem(TOKEN_KEY, JSON.stringify({ token: accessToken, login }));
  session.loginMode = login;
}

export function forget() {
  sessionStorage.removeItem(TOKEN_KEY);
}

async function token() {
  const kept = saved();
  if (kept && kept.token) {
    session.loginMode = Boolean(kept.login);
    return kept.token;
  }
  if (session.loginMode) throw new AuthNeeded();
  const answer = await fetch(LOCAL_TOKEN, { method: "POST", headers: { Accept: "application/json" } });
  if (answer.status === 403) {
    session.loginMode = true;
    session.loginNeeded("");
    throw new AuthNeeded();
  }
  if (!answer.ok) throw new ApiError(answer.status, await detailOf(answer));
  const body = await answer.json();
  keep(body.access_token, false);
  return body.access_token;
}

// The password grant of the notebook, at the service's token endpoint: null when logged in, else
// the reason to show.
export async function logIn(user, password) {
  const form = new URLSearchParams({ grant_type: "password", client_id: "ordering", username: user, password });
  let answer;
  try {
    answer = await fetch(TOKEN_PATH, { method: "POST", body: form });
  } catch (error) {
    return "The service does not answer: " + error.message;
  }
  if (!answer.ok) return "Not logged in: " + (await detailOf(answer));
  keep((await answer.json()).access_token, true);
  return null;
}

export async function api(path, options = {}) {
  const bearer = await token();
  const headers = { Accept: "application/json", ...(options.headers || {}), Authorization: "Bearer " + bearer };
  const answer = await fetch(ROOT + path, { ...options, headers });
  if (answer.status === 401) {
    forget();
    if (session.loginMode) session.loginNeeded("Your session has ended: log in again.");
    throw new AuthNeeded();
  }
  return answer;
}

export async function apiJSON(path) {
  const answer = await api(path);
  if (!answer.ok) throw new ApiError(answer.status, await detailOf(answer));
  return answer.json();
}

// The message of an error answer: FastAPI's {"detail"} or Keycloak's {"error_description"}.
export async function detailOf(answer) {
  const text = await answer.text();
  try {
    const body = JSON.parse(text);
    if (typeof body.detail === "string") return body.detail;
    if (body.error_description) return body.error_description;
    return JSON.stringify(body.detail ?? body);
  } catch {
    return text || answer.statusText;
  }
}
