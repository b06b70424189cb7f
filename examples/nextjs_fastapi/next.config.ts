// next.config.ts: forward /api/py/* to the Python API, so the browser sends Auth.js's
// cookie to one origin and the API reads it.
import type { NextConfig } from "next"

const config: NextConfig = {
  async rewrites() {
    return [{ source: "/api/py/:path*", destination: "http://127.0.0.1:8000/api/py/:path*" }]
  },
}

export default config
