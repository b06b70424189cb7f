// The Auth.js endpoints (/api/auth/signin, /api/auth/session, ...).
import { handlers } from "../../../../auth"

export const { GET, POST } = handlers
