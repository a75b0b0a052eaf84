// A Jest transform that strips TypeScript types and keeps ES modules as they are.
import ts from 'typescript'

export default {
  process(source, path) {
    const out = ts.transpileModule(source, {
      fileName: path,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, inlineSourceMap: true },
    })
    return { code: out.outputText }
  },
}
