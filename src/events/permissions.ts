import { isAdmin, type Viewer } from '../auth/token';

/** The role a token needs to read the event feed (admin may too). */
export const EVENTS_READ_ROLE = 'events:read';

/** Whether the viewer may read the event feed. */
export function mayReadEvents(viewer: Viewer): boolean {
  return isAdmin(viewer) || viewer.roles.includes(EVENTS_READ_ROLE);
}
