# Writes model/ (save_pretrained of a tiny random SamModel) and io.safetensors (its float64 forward on fixed
# inputs, rounded to float32) for SamTransformersParityTests. Last run: transformers 5.17.0, torch 2.11.0+cu130, CPU.
# Usage: OUT=. python3 make.py
import torch,math,os,transformers
from transformers import SamConfig,SamModel
from safetensors.torch import save_file
O=os.environ.get('OUT','.');g=torch.Generator().manual_seed(7)
R=lambda *s:torch.randn(*s,generator=g,dtype=torch.float64)
c=SamConfig(vision_config=dict(hidden_size=32,output_channels=32,num_hidden_layers=2,num_attention_heads=2,image_size=128,patch_size=16,window_size=3,global_attn_indexes=[1],num_pos_feats=16,mlp_dim=64),prompt_encoder_config=dict(hidden_size=32,image_size=128,patch_size=16,mask_input_channels=8),mask_decoder_config=dict(hidden_size=32,mlp_dim=64,num_hidden_layers=2,num_attention_heads=4,iou_head_hidden_dim=32))
m=SamModel(c).double().eval()
with torch.no_grad():
 for n,p in m.named_parameters():
  f=p[0].numel() if p.dim()>1 else 1
  if 'upscale_conv' in n and p.dim()>1:f=p.shape[0]
  s=0.1 if(p.dim()==1)else(0.3 if 'pos' in n else(0.5 if p.shape[0]<=4 and p.dim()==2 else 1/math.sqrt(f)))
  p.copy_(R(*p.shape)*s+(1 if 'norm' in n and n.endswith('weight') else 0))
 m.shared_image_embedding.positional_embedding.copy_(R(2,16))
 m.float().double()
 m.float().save_pretrained(O+'/m');m.double()
 px=R(1,3,128,128).float().double();e=m.get_image_embeddings(px);io={'pixels':px,'embedding':e}
 B=torch.tensor([[[20.5,31,97,110.25]]],dtype=torch.float64);P=torch.tensor([[[[64,40],[12.5,100]]]],dtype=torch.float64);L=torch.tensor([[[1,0]]])
 for k,a in [('box',dict(input_boxes=B)),('points',dict(input_points=P,input_labels=L))]:
  for mm in [1,0]:
   o=m(image_embeddings=e,multimask_output=bool(mm),**a);io[f'{k}_{mm}_masks']=o.pred_masks;io[f'{k}_{mm}_iou']=o.iou_scores
save_file({k:v.float().contiguous() for k,v in io.items()},O+'/io.safetensors',metadata={'transformers':transformers.__version__,'torch':torch.__version__})
print(transformers.__version__,torch.__version__,{k:tuple(v.shape) for k,v in io.items()})
