export { OutboxEvent } from './event.entity';
export { EventResolver } from './event.resolver';
export { eventCursor, readEvents, type StoredEvent } from './feed';
export { appendEvent, asOneStatement, eventId, type NewEvent, type Statement, withEvent } from './outbox';
