import { createContext } from "preact";
import { useContext } from "preact/hooks";

import type { Key } from "./i18n.js";

export type T = (key: Key, params?: Record<string, string | number>) => string;

export const I18n = createContext<T>((key) => key);

export function useT(): T {
  return useContext(I18n);
}
