/** qapi/common.json (7.2): the shared types the block layer's schema uses. */
import { alternate, enumType, nul, str, struct } from './types.js';

export const IoOperationType = enumType('IoOperationType', ['read', 'write']);
export const OnOffAuto = enumType('OnOffAuto', ['auto', 'on', 'off']);
export const OnOffSplit = enumType('OnOffSplit', ['on', 'off', 'split']);
/** QAPI's 'String' (a TS name that does not shadow the global). */
export const StringStruct = struct('String', { str });
export const StrOrNull = alternate('StrOrNull', [str, nul] as const);
