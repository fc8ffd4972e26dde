/** The text prompt for a question about media, shared by the command line and the page. */
import type { ChatContent } from './chat_template';
import type { VideoLlavaProcessor } from './processor';

/** The prompt as given when it already has placeholders or roles, else wrapped in the chat template. */
export function buildPrompt(processor: VideoLlavaProcessor, prompt: string, images: number, videos: number): string {
  const { image_token: img, video_token: vid } = processor.config;
  if (prompt.includes(img) || prompt.includes(vid) || /^\s*USER:/.test(prompt)) return prompt;
  const content: ChatContent[] = [
    ...Array.from({ length: images }, () => ({ type: 'image' as const })),
    ...Array.from({ length: videos }, () => ({ type: 'video' as const })),
    { type: 'text', text: prompt },
  ];
  return processor.applyChatTemplate([{ role: 'user', content }], { addGenerationPrompt: true });
}

